"""Money: cost per 1,000 requests, one-time training cost, monthly cost, break-even volume."""

from __future__ import annotations

from typing import Any



def request_cost(arm: dict[str, Any], prices: dict[str, Any]) -> tuple[float, str]:
    """Cost of one request and how it was priced: by tokens (a priced model) or by measured seconds."""
    s = arm["summary"]
    models = prices.get("models", {})
    model_price = models.get(arm["model"]) or models.get(arm.get("endpoint_model") or "")
    if model_price:
        cost = (s["mean_input_tokens"] * model_price["input_per_million"]
                + s["mean_output_tokens"] * model_price["output_per_million"]) / 1e6
        return cost, "tokens"
    seconds = 1.0 / s["examples_per_s"] if s["examples_per_s"] and s["examples_per_s"] > 0 else 0.0
    return seconds * prices.get("hardware_per_hour", 0.0) / 3600, "seconds"


def training_cost(arm: dict[str, Any], prices: dict[str, Any], arms_by_name: dict[str, dict]) -> float:
    """One-time cost: training wall time x price per hour; a hybrid shares its tuned arm's cost."""
    training = arm.get("training") or {}
    if arm["type"] == "hybrid" and training.get("uses") in arms_by_name:
        training = arms_by_name[training["uses"]].get("training") or {}
    per_hour = prices.get("training_per_hour")
    per_hour = prices.get("hardware_per_hour", 0.0) if per_hour is None else per_hour
    return (training.get("wall_s") or 0.0) * per_hour / 3600


def arm_costs(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    prices = report["config"].get("prices") or {}
    volume = prices.get("requests_per_month", 0)
    arms = {a["name"]: a for a in report["arms"] if a.get("summary")}
    out = {}
    for name, arm in arms.items():
        per_request, basis = request_cost(arm, prices)
        one_time = training_cost(arm, prices, arms)
        out[name] = {"per_1k": per_request * 1000, "basis": basis, "one_time": one_time,
                     "monthly": per_request * volume, "train_flops": (arm.get("training") or {}).get("train_flops")}
    return out


def break_even(tuned_cost: dict[str, Any], prompt_cost: dict[str, Any]) -> float | None:
    """Requests after which the tuned arm's one-time cost is paid back by cheaper requests; None if never."""
    saving = (prompt_cost["per_1k"] - tuned_cost["per_1k"]) / 1000
    if saving <= 0:
        return None
    return tuned_cost["one_time"] / saving
