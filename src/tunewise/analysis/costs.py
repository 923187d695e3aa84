"""Money: cost per 1,000 requests, one-time training cost, monthly cost, break-even volume."""

from __future__ import annotations

import math
from typing import Any

from .model import ArmCost, ArmResult


def request_cost(arm: ArmResult, prices: dict[str, Any]) -> tuple[float, str]:
    """Cost of one request and how it was priced: by tokens (a priced model) or by measured seconds."""
    s = arm.summary
    models = prices.get("models", {})
    model_price = models.get(arm.model) or models.get(arm.endpoint_model or "")
    if model_price:
        cost = (s.mean_input_tokens * model_price["input_per_million"]
                + s.mean_output_tokens * model_price["output_per_million"]) / 1e6
        return cost, "tokens"
    seconds = 1.0 / s.examples_per_s if s.examples_per_s and s.examples_per_s > 0 else 0.0
    return seconds * prices.get("hardware_per_hour", 0.0) / 3600, "seconds"


def training_record(arm: ArmResult, arms: dict[str, ArmResult]) -> dict[str, Any]:
    """What training recorded for this arm; a hybrid shares its tuned arm's."""
    training = arm.training or {}
    if arm.traits.hybrid and training.get("uses") in arms:
        training = arms[training["uses"]].training or {}
    return training


def training_cost(arm: ArmResult, prices: dict[str, Any], arms: dict[str, ArmResult]) -> float:
    """One-time cost: training (or search) wall time × price per hour."""
    per_hour = prices.get("training_per_hour")
    per_hour = prices.get("hardware_per_hour", 0.0) if per_hour is None else per_hour
    return spent_seconds(training_record(arm, arms)) * per_hour / 3600


def spent_seconds(record: dict[str, Any]) -> float:
    """The compute a training record spent: a fine-tune search's trials, and the winner's training when it
    trained again on the whole train split (otherwise the winner is one of the trials)."""
    search = record.get("tune_search")
    if not search:
        return record.get("wall_s") or 0.0
    return (search.get("wall_s") or 0.0) + ((record.get("wall_s") or 0.0) if search.get("train_size") else 0.0)


def judge_cost(usage: dict[str, Any] | None, judge_model: str | None, prices: dict[str, Any]) -> float | None:
    """What the judge's calls cost: by tokens when its model is priced, else by its measured seconds."""
    if not usage:
        return None
    price = (prices.get("models") or {}).get(judge_model or "")
    if price:
        return (usage["input_tokens"] * price["input_per_million"]
                + usage["output_tokens"] * price["output_per_million"]) / 1e6
    return usage["seconds"] * prices.get("hardware_per_hour", 0.0) / 3600


def arm_costs(arms: list[ArmResult], prices: dict[str, Any], judge_model: str | None = None) -> dict[str, ArmCost]:
    volume = prices.get("requests_per_month")
    finished = {a.name: a for a in arms if a.summary is not None}
    out = {}
    for name, arm in finished.items():
        per_request, basis = request_cost(arm, prices)
        out[name] = ArmCost(per_1k=per_request * 1000, basis=basis, one_time=training_cost(arm, prices, finished),
                            monthly=None if volume is None else per_request * volume,
                            train_flops=(arm.training or {}).get("train_flops"),
                            judge=judge_cost(arm.summary.judge, judge_model, prices))
    return out


def break_even(tuned: ArmCost, prompt: ArmCost) -> float | None:
    """Requests after which the tuned arm's one-time cost is paid back by cheaper requests; None if never."""
    saving = (prompt.per_1k - tuned.per_1k) / 1000
    if saving <= 0:
        return None
    return tuned.one_time / saving


def money(value: float | None, currency: str) -> str:
    """An amount with three significant digits: 0.00156 USD, 1.23e+03 USD never; 1230 USD."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0:
        return f"0 {currency}"
    text = f"{value:.3g}"
    if "e+" in text:  # large amounts read better whole
        text = f"{value:,.0f}"
    return f"{text} {currency}"
