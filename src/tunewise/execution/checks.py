"""Checks of a task against its splits and this machine, made before the first arm runs: a mistake found
after an hour of training loses the hour."""

from __future__ import annotations

import os
import sys

from ..backends import is_remote
from ..errors import DataError, TaskFileError
from ..registry import traits
from ..task import Task, arm_name
from ..task.data import Splits


def check_before_running(task: Task, splits: Splits, task_file: str, labels: list[str] = ()) -> list[str]:
    """Raise TaskFileError for anything the run would otherwise fail on, or silently shrink, later; return
    warnings about settings that will have no effect."""
    _check_sizes(task, splits, task_file)
    notes = _check_arm_settings(task, list(labels), splits.sizes(), task_file)
    notes += _check_knowledge(task, task_file)
    _check_executor(task, task_file)
    local = _check_models(task, task_file)
    notes += _probe_endpoints(task, task_file)
    if local:
        _check_device(task.device, task_file)
        _check_processes(task, task_file)
    return notes + _unused_split_settings(task, splits) + _unused_judge_settings(task) + _unused_prices(task)


def _unused_judge_settings(task: Task) -> list[str]:
    judge = task.judge
    if judge is None or judge.human_score or not judge.changed("min_agreement"):
        return []
    return ["judge.min_agreement: there are no human scores to agree with (judge.human_score), so this setting has "
            "no effect"]


def _unused_split_settings(task: Task, splits: Splits) -> list[str]:
    """Split settings that a split column, groups or the task type leave without effect."""
    cfg = task.splits
    column = any(e.split for e in splits.train + splits.dev + splits.test)
    found = [(name, "the data's split column fixes the splits, so this fraction has no effect")
             for name in cfg.changed("train", "dev", "test") if column]
    if column and len(cfg.all_seeds()) > 1:
        found.append(("seeds", "the data's split column fixes the splits: each seed runs on the same ones (only "
                               "the examples shown and the training seed change), so their agreement says little"))
    if cfg.changed("stratify") and (cfg.group_by or task.type != "classification"):
        why = "groups go whole into a split" if cfg.group_by else f"only classification is stratified, not {task.type}"
        found.append(("stratify", f"{why}, so this setting has no effect"))
    return [f"splits.{name}: {why}" for name, why in found]


def _check_arm_settings(task: Task, labels: list[str], sizes: dict[str, int], task_file: str) -> list[str]:
    """Each arm's own check of its settings against the labels and splits; the settings it will not read."""
    notes = []
    for i, arm in enumerate(task.arms):
        problem = arm.check_data(task, labels, sizes)
        if problem:
            raise TaskFileError(f"arm {arm_name(arm)!r}: {problem[0]}", file=task_file, field=f"arms.{i}.{problem[1]}")
        notes += [f"arms.{i}.{field}: {why}" for field, why in arm.unused(task, sizes)]
    return notes


def _unused_prices(task: Task) -> list[str]:
    """A price under a name no arm uses (a typo) would leave that arm priced by hardware time: say so."""
    used = {a.model or task.model for a in task.arms} | {e.model for e in task.endpoints.values()}
    if task.judge is not None:  # the judge's calls are costed too
        used.add(task.judge.model)
    return [f"prices.models.{name}: no arm uses a model of that name ({', '.join(sorted(used))}), so this price "
            f"is unused" for name in task.prices.models if name not in used]


def _check_needed_splits(task: Task, splits: Splits, task_file: str) -> None:
    """A split an arm reads is not empty; when groups left it so, the error says that they did."""
    sizes, group_by = splits.sizes(), task.splits.group_by
    for arm in task.arms:
        for split, why in _reads(arm):
            if sizes[split]:
                continue
            fix = (f"splits.group_by {group_by!r} put every group in another split (train {sizes['train']}, dev "
                   f"{sizes['dev']}, test {sizes['test']} rows): group by a field with more values, or give "
                   f"splits.{split} a larger share") if group_by else f"give splits.{split} a share"
            raise TaskFileError(f"arm {arm_name(arm)!r} {why}, and the {split} split is empty; {fix}",
                                file=task_file, field="splits.group_by" if group_by else f"splits.{split}")


def _reads(arm) -> list[tuple[str, str]]:
    """The splits an arm reads before answering, and what for."""
    kind = traits(arm.type)
    out = [("train", "fine-tunes" if kind.fine_tune else "trains on the train split")] if kind.trains_weights else []
    if getattr(arm, "k", 0) or any(getattr(getattr(arm, "search", None), "ks", ())):
        out.append(("train", "shows worked examples from the train split"))
    if kind.searches:
        out.append(("dev", "scores its prompt search's trials on dev"))
    return out


def _check_sizes(task: Task, splits: Splits, task_file: str) -> None:
    _check_needed_splits(task, splits, task_file)
    n_train = len(splits.train)
    fix = "lower it, or give the train split more rows (splits.train, more data)"
    for i, arm in enumerate(task.arms):
        k = getattr(arm, "k", 0)
        if k and k > n_train:
            raise TaskFileError(f"arm {arm_name(arm)!r} shows {k} examples but the train split has {n_train}; {fix}",
                                file=task_file, field=f"arms.{i}.k")
        size = getattr(getattr(arm, "train", None), "train_size", None)
        if size is not None and size > n_train:
            raise TaskFileError(f"arm {arm_name(arm)!r}: train_size {size} is more than the {n_train} train "
                                f"examples; {fix}", file=task_file, field=f"arms.{i}.train.train_size")
    curve = task.learning_curve
    if curve is None:
        return
    big = [s for s in curve.sizes if s != "all" and s > n_train]
    if big and any(traits(a.type).curve == "train_size" for a in task.arms):
        raise TaskFileError(f"{', '.join(map(str, big))} train examples asked for, but the train split has "
                            f"{n_train}; a point trained on fewer than its label says would be misreported: use "
                            f"sizes up to {n_train}, or 'all'", file=task_file, field="learning_curve.sizes")
    big = [k for k in curve.ks if k > n_train]
    if big and any(traits(a.type).curve == "examples" for a in task.arms):
        raise TaskFileError(f"k {', '.join(map(str, big))} asked for, but the train split has {n_train} "
                            f"examples; use ks up to {n_train}", file=task_file, field="learning_curve.ks")


def _searched_passages(arm, task: Task) -> list[int]:
    """The passage counts a searched arm's trials may retrieve (none for other arms)."""
    search = getattr(arm, "search", None)
    choices = getattr(search, "passage_choices", None)
    return choices(task) if choices else []


def _check_knowledge(task: Task, task_file: str) -> list[str]:
    """The knowledge source reads, and every passage fits the context of the models that retrieve it; the
    returned warnings name the settings it leaves without effect."""
    if task.knowledge is None:
        return []
    retrieving = {i: arm for i, arm in enumerate(task.arms) if traits(arm.type).retrieves}
    searching = [arm for arm in task.arms if any(_searched_passages(arm, task))]  # a search may retrieve too
    if not retrieving and not searching:
        return ["knowledge: no arm retrieves passages (add a retrieval arm), so the knowledge source is unused"]
    path = task.path_of(task.knowledge.path)
    if not path.exists():
        raise TaskFileError(f"the knowledge source {path} does not exist", file=task_file, field="knowledge.path")
    from ..arms.knowledge import read_passages
    passages = read_passages(task)  # an empty or malformed source fails now, not after the other arms ran
    _check_passage_lengths(task, {a.model or task.model for a in [*retrieving.values(), *searching]}, passages)
    notes = [f"arms.{i}.passages: the knowledge source holds {len(passages)} passages, so each prompt gets those"
             for i, arm in retrieving.items() if arm.changed("passages") and arm.passages > len(passages)]
    if path.is_dir() and task.knowledge.changed("field"):
        notes.append("knowledge.field: a folder's passages are its files' paragraphs, so this setting has no effect")
    return notes


CHARS_PER_TOKEN = 16  # more than any tokenizer packs into a token of text: longer prefixes need no counting


def _check_passage_lengths(task: Task, models: set[str], passages) -> None:
    """A passage longer than a model's context, with room for the answer, cannot be read by it in any prompt."""
    from ..backends import local_weights
    from ..backends.models import context_length, token_counter
    for model in sorted(models):
        weights = local_weights(model, task.endpoints)
        limit = context_length(weights) if weights else None  # a remote model's context is unknown
        if not limit:
            continue
        room = limit - task.generation.max_tokens
        long = [p for p in passages if len(p.text.encode()) > room]  # no tokenizer makes more tokens than bytes
        count = token_counter(weights) if long else None
        for p in long:
            if count(p.text[: CHARS_PER_TOKEN * (room + 1)]) > room:
                raise DataError(f"a passage of {len(p.text):,} characters is longer than {model}'s context can "
                                f"hold ({limit} tokens, {task.generation.max_tokens} of them for the answer); split "
                                f"it into shorter passages", file=p.file, line=p.line, field=p.field)


def _check_models(task: Task, task_file: str) -> bool:
    """Every model an arm names can be loaded (its config read, no weights); True if any is local."""
    from ..backends.models import model_problem
    local = False
    for i, arm in enumerate(task.arms):
        model = arm.model or task.model
        field = f"arms.{i}.model" if arm.model else "model"
        remote = is_remote(model, task.endpoints)
        if traits(arm.type).fine_tune and remote:
            raise TaskFileError(f"arm {arm_name(arm)!r} fine-tunes, which needs a local model (a hub id or a "
                                f"directory), not {model!r}", file=task_file, field=field)
        if remote:
            _check_api_key(task, model, task_file)
            continue
        local = True
        problem = model_problem(model)
        if problem:
            raise TaskFileError(problem, file=task_file, field=field)
    return _check_proposers(task, task_file) | _check_judge_model(task, task_file) | local


def _check_proposers(task: Task, task_file: str) -> bool:
    """A searched arm's proposer is an endpoint of the task or a model that loads; True if one is local."""
    from ..backends.models import model_problem
    local = False
    for i, arm in enumerate(task.arms):
        proposer = getattr(getattr(arm, "search", None), "proposer", None)
        if proposer is None:
            continue
        if is_remote(proposer, task.endpoints):
            _check_api_key(task, proposer, task_file)
            continue
        local = True
        problem = model_problem(proposer)
        if problem:
            endpoints = f" ({', '.join(task.endpoints)})" if task.endpoints else " (it has none)"
            raise TaskFileError(f"{proposer!r} is neither an endpoint of the task{endpoints} nor a model that "
                                f"loads: {problem}", file=task_file, field=f"arms.{i}.search.proposer")
    return local


def _used_endpoints(task: Task) -> list[str]:
    """The task's endpoints that an arm, the judge or a prompt search's proposer asks."""
    names = [a.model or task.model for a in task.arms] + [task.judge.model if task.judge else None]
    names += [getattr(getattr(a, "search", None), "proposer", None) for a in task.arms]
    return [n for n in dict.fromkeys(names) if n in task.endpoints]


def _probe_endpoints(task: Task, task_file: str) -> list[str]:
    """Each endpoint used answers now: its model list is asked for (no tokens spent), so a server that is down,
    or refuses the key, stops the run before any arm ran; a model name the list lacks is a warning (llama.cpp's
    server, for one, answers whatever name it is sent)."""
    notes = []
    for name in _used_endpoints(task):
        listed = _listed_models(name, task.endpoints[name], task_file)
        model = task.endpoints[name].model
        if listed is not None and model not in listed:
            shown = ", ".join(listed[:8]) + (", ..." if len(listed) > 8 else "") if listed else "no model"
            notes.append(f"endpoints.{name}.model: the server lists no model {model!r} (it lists {shown}); it may "
                         f"refuse the name, or answer with another model")
    return notes


def _listed_models(name: str, endpoint, task_file: str) -> list[str] | None:
    """The model ids the endpoint's server lists; None when it has no model list to ask (it may still answer)."""
    import httpx
    key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = endpoint.base_url.rstrip("/") + "/models"
    try:
        response = httpx.get(url, headers=headers, timeout=min(endpoint.timeout_s, 10.0))
    except httpx.HTTPError as err:
        raise TaskFileError(f"the server at {endpoint.base_url} does not answer ({type(err).__name__}: {err}); "
                            f"start it, or correct base_url", file=task_file, field=f"endpoints.{name}.base_url") \
            from None
    if response.status_code in (401, 403):
        raise TaskFileError(f"the server at {endpoint.base_url} refuses the API key (HTTP {response.status_code})",
                            file=task_file, field=f"endpoints.{name}.api_key_env")
    try:
        data = response.json()["data"] if response.status_code == 200 else None
        return [str(m["id"]) for m in data] if isinstance(data, list) else None
    except (ValueError, KeyError, TypeError):
        return None


def _check_api_key(task: Task, model: str, task_file: str) -> None:
    """An endpoint's API key is in the environment, when the endpoint names one."""
    endpoint = task.endpoints.get(model)
    if endpoint is not None and endpoint.api_key_env and not os.environ.get(endpoint.api_key_env):
        raise TaskFileError(f"the environment variable {endpoint.api_key_env} (the API key) is not set",
                            file=task_file, field=f"endpoints.{model}.api_key_env")


def _check_judge_model(task: Task, task_file: str) -> bool:
    """The judge's model can be loaded too (or its endpoint's key is set); True if it is local."""
    from ..backends.models import model_problem
    model = task.judge.model if task.judge else None
    if model is None:
        return False
    if is_remote(model, task.endpoints):
        _check_api_key(task, model, task_file)
        return False
    problem = model_problem(model)
    if problem:
        raise TaskFileError(problem, file=task_file, field="judge.model")
    return True


def _check_executor(task: Task, task_file: str) -> None:
    """A local Ray instance has this machine's resources: a unit asking for more would wait forever."""
    settings = task.executor
    ray = sys.modules.get("ray")
    if settings.type != "ray" or settings.address not in (None, "local") or (ray and ray.is_initialized()):
        return  # a cluster's resources are its own (a Ray started before the run may be one)
    have = {"cpus": os.cpu_count() or 1, "memory_gb": _memory_gb()}
    if settings.gpus:
        import torch
        have["gpus"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    units = {"cpus": "CPUs", "gpus": "GPUs", "memory_gb": "GB of memory"}
    for name, available in have.items():
        asked = getattr(settings, name)
        if asked and asked > available:
            raise TaskFileError(f"each unit asks for {asked:g} {units[name]}, and the local Ray instance has this "
                                f"machine's {available:.3g}: no unit would ever start; ask for at most that, or give "
                                f"executor.address of a cluster", file=task_file, field=f"executor.{name}")


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # not POSIX: no bound known
        return float("inf")


def _check_processes(task: Task, task_file: str) -> None:
    """train.processes: n launches n data-parallel processes, on GPUs 0..n-1 where there are GPUs."""
    for i, arm in enumerate(task.arms):
        processes = getattr(getattr(arm, "train", None), "processes", "auto")
        if processes == "auto" or processes == 1 or task.device == "cpu":
            continue
        field = f"arms.{i}.train.processes"
        if task.device not in ("auto", "cuda"):
            raise TaskFileError(f"arm {arm_name(arm)!r}: {processes} processes train on GPUs 0 to {processes - 1}, "
                                f"not on device {task.device!r} alone; use device: cuda, or processes: 1",
                                file=task_file, field=field)
        import torch
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if processes > count and (count or task.device == "cuda"):
            raise TaskFileError(f"arm {arm_name(arm)!r}: {processes} training processes asked for, one per GPU, "
                                f"but this machine has {count} GPU(s); use processes: auto", file=task_file,
                                field=field)


def _check_device(device: str, task_file: str) -> None:
    if device in ("auto", "cpu"):
        return
    import torch
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device (or a torch built without CUDA)"
            raise TaskFileError(f"{device!r} asked for, but this machine has {have}; use device: auto or cpu",
                                file=task_file, field="device")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise TaskFileError("'mps' asked for, but this machine has no Apple GPU; use device: auto or cpu",
                            file=task_file, field="device")
