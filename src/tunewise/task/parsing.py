"""Turning a model's raw text into an answer of the task's type."""

from __future__ import annotations

import json
import re
from typing import Any


def parse_answer(task_type: str, raw: str, labels: list[str] | None = None) -> Any:
    if task_type == "classification":
        return parse_label(raw, labels or [])
    if task_type == "extraction":
        return parse_json(raw)
    return raw.strip()


def parse_label(raw: str, labels: list[str]) -> str | None:
    """The label the answer states: an exact answer first, else the earliest label mentioned."""
    text = raw.strip().strip(" .!\"'`*").lower()
    by_lower = {label.lower(): label for label in labels}
    if text in by_lower:
        return by_lower[text]
    best, best_at = None, None
    for label in sorted(labels, key=len, reverse=True):
        match = re.search(rf"(?<![\w-]){re.escape(label.lower())}(?![\w-])", raw.lower())
        if match and (best_at is None or match.start() < best_at):
            best, best_at = label, match.start()
    return best


def parse_json(raw: str) -> dict | None:
    """The first JSON object in the text (a fenced block or bare braces), or None."""
    text = raw.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fenced:
        text = fenced.group(1).strip()
    start = text.find("{")
    while start >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(text[start:])
            if isinstance(value, dict):
                return value
        except json.JSONDecodeError:
            pass
        start = text.find("{", start + 1)
    return None
