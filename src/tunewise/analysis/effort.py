"""How much work found each arm: trials, dev answers, compute seconds, tokens and money spent before its test
answers. A verdict between a searched side and an unsearched one says so: the comparison was not even."""

from __future__ import annotations

from .costs import spent_seconds, training_record
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
    own = Effort(how="one training, fixed settings", trials=1, dev_answers=_dev_answers(record),
                 seconds=record.get("wall_s") or 0.0, tokens=record.get("tokens_seen"), money=one_time)
    source = arms.get(record.get("settings_from") or "")
    found = ((source.training or {}).get("tune_search") if source is not None else None)
    if not found:
        return own
    # trained with the settings another arm's search chose: that search is part of what found it
    return Effort(how=f"one training, with the settings {source.name}'s search chose", searched=True,
                  trials=len(found["trials"]), dev_answers=_trial_answers(found) + own.dev_answers,
                  seconds=(found.get("wall_s") or 0.0) + own.seconds,
                  tokens=sum(t.get("tokens") or 0 for t in found["trials"]) + (own.tokens or 0) or None,
                  money=one_time, shared_with=source.name)


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
    answers = _trial_answers(search)
    tokens = sum(t.get("tokens") or 0 for t in trials)
    if search.get("train_size"):  # the winner trained again, on the whole train split
        answers += _dev_answers(record)
        tokens += record.get("tokens_seen") or 0
    return Effort(how="searched", searched=True, trials=len(trials), dev_answers=answers,
                  seconds=spent_seconds(record),
                  tokens=tokens or None, money=one_time)


def _trial_answers(search: dict) -> int:
    """Dev answers a fine-tune search's trials asked for: each trial's dev items after each of its epochs."""
    return sum((t.get("epochs_run") or 0) * (t.get("dev_items") or search.get("dev_items") or 0)
               for t in search["trials"])


def _dev_answers(record: dict) -> int:
    """Dev answers a training's epoch selection asked for: its dev items after each epoch."""
    return (record.get("dev_items") or 0) * len(record.get("dev") or [])


def effort_text(effort: Effort, currency_money: str | None) -> str:
    """The framework table's effort cell."""
    if not effort.trials:
        return "none: the prompt as written (no dev answers, nothing searched)"
    found = (f"{effort.trials} trials searched" if effort.searched else "one training with fixed settings")
    if effort.shared_with:
        found = f"one training with the settings {effort.shared_with}'s {effort.trials} trials found"
    parts = [found, f"{effort.dev_answers:,} dev answers", f"{effort.seconds:,.0f} s compute"]
    if effort.tokens:
        parts.append(f"{effort.tokens:,} tokens")
    if currency_money:
        parts.append(currency_money)
    return ", ".join(parts) + " to find it"
