"""How much work found each arm: trials, dev answers, compute seconds, tokens and money spent before its test
answers. A verdict between a searched side and an unsearched one says so: the comparison was not even."""

from __future__ import annotations

from .costs import training_record
from .model import ArmResult, Effort


def arm_effort(arm: ArmResult, arms: dict[str, ArmResult], one_time: float) -> Effort:
    """The effort behind an arm: a searched prompt's trials, a training (or a fine-tune search's trainings),
    or none for a prompt written by hand."""
    record = training_record(arm, arms)
    if record.get("kind") == "search":
        return _prompt_search(record, one_time)
    if not arm.traits.trains_weights or not record:
        return Effort(how="written by hand")
    search = record.get("tune_search")
    if search:
        return _tune_search(record, search, one_time)
    return Effort(how="one training, fixed settings", trials=1, dev_answers=_dev_answers(record),
                  seconds=record.get("wall_s") or 0.0, tokens=record.get("tokens_seen"), money=one_time)


def _prompt_search(record: dict, one_time: float) -> Effort:
    dev = record.get("dev_items") or 0
    answers = tokens = 0
    for t in record["trials"]:
        # a pruned trial stopped after its first slice of dev (a quarter) unless the trial says how many
        answers += t.get("items") or (dev if t["state"] == "complete" else max(1, dev // 4))
        tokens += t.get("tokens") or 0
    return Effort(how="searched", searched=True, trials=len(record["trials"]), dev_answers=answers,
                  seconds=record.get("wall_s") or 0.0, tokens=tokens or None, money=one_time)


def _tune_search(record: dict, search: dict, one_time: float) -> Effort:
    trials = search["trials"]
    answers = sum((t.get("epochs_run") or 0) * (t.get("dev_items") or search.get("dev_items") or 0) for t in trials)
    tokens = sum(t.get("tokens") or 0 for t in trials)
    seconds = search.get("wall_s") or 0.0
    if search.get("train_size"):  # the winner trained again, on the whole train split
        answers += _dev_answers(record)
        tokens += record.get("tokens_seen") or 0
        seconds += record.get("wall_s") or 0.0
    return Effort(how="searched", searched=True, trials=len(trials), dev_answers=answers, seconds=seconds,
                  tokens=tokens or None, money=one_time)


def _dev_answers(record: dict) -> int:
    """Dev answers a training's epoch selection asked for: its dev items after each epoch."""
    return (record.get("dev_items") or 0) * len(record.get("dev") or [])


def effort_text(effort: Effort, currency_money: str | None) -> str:
    """The framework table's effort cell."""
    if not effort.trials:
        return "none: the prompt as written (no dev answers, nothing searched)"
    found = (f"{effort.trials} trials searched" if effort.searched else "one training with fixed settings")
    parts = [found, f"{effort.dev_answers:,} dev answers", f"{effort.seconds:,.0f} s compute"]
    if effort.tokens:
        parts.append(f"{effort.tokens:,} tokens")
    if currency_money:
        parts.append(currency_money)
    return ", ".join(parts) + " to find it"
