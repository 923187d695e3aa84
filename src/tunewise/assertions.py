"""Assertions: deterministic checks of one answer (its length, what it contains, its JSON, its reading level,
its language, a refusal), each a pass/fail metric, so pass rates get intervals and arms paired tests.

The checks that need a library (jsonschema, textstat, langdetect) import it when first used; a missing one
says which `pip install` brings it.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from .errors import MissingDependencyError
from .metrics import Metric

INSTALL = "pip install 'tunewise[assert]'"

# openings of an answer that declines (after promptfoo's is-refusal and inspect's refusal scorers)
REFUSAL = re.compile(
    r"^\W*(?:i(?:'m| am) (?:sorry|unable|not able)|i (?:can(?:'|no)t|cannot|won't|will not|must decline)"
    r"|sorry,? (?:but )?i|as an ai\b|i apologi[sz]e|unfortunately,? i (?:can(?:'|no)t|cannot|am unable))",
    re.I)


def _need(module: str, package: str, why: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{why} needs {package}: {INSTALL}") from None


def answer_text(pred: Any) -> str:
    """The answer as text: extraction answers are JSON objects; an answer that could not be read is empty."""
    if pred is None:
        return ""
    return pred if isinstance(pred, str) else json.dumps(pred, ensure_ascii=False)


def words(text: str) -> int:
    return len(re.findall(r"[\w'’-]+", text))


def sentences(text: str) -> int:
    """Runs of text ended by . ! ? (or the text's end) holding a word."""
    return sum(1 for part in re.split(r"(?<=[.!?])\s+", text.strip()) if re.search(r"\w", part))


def in_range(value: float, config: dict) -> bool:
    low, high = config.get("min"), config.get("max")
    return (low is None or value >= low) and (high is None or value <= high)


def _matches(text: str, config: dict) -> list[bool]:
    flags = 0 if config.get("case_sensitive") else re.I
    values = config["value"]
    if config.get("regex"):
        return [re.search(v, text, flags) is not None for v in values]
    fold = (lambda s: s) if config.get("case_sensitive") else str.casefold
    return [fold(v) in fold(text) for v in values]


def _starts_with(text: str, config: dict) -> bool:
    text = text.lstrip()
    flags = 0 if config.get("case_sensitive") else re.I
    if config.get("regex"):
        return any(re.match(v, text, flags) for v in config["value"])
    fold = (lambda s: s) if config.get("case_sensitive") else str.casefold
    return any(fold(text).startswith(fold(v)) for v in config["value"])


def _json(text: str) -> tuple[bool, Any]:
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)```", body, re.S)  # a fenced block is still the JSON answer
    try:
        return True, json.loads(fenced.group(1) if fenced else body)
    except (json.JSONDecodeError, ValueError, RecursionError):
        return False, None


def check_schema(schema: dict) -> None:
    """ValueError when the schema is not a valid JSON Schema."""
    jsonschema = _need("jsonschema", "jsonschema", "the json_schema assertion")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as err:
        raise ValueError(f"is not a valid JSON Schema: {err.message}") from None


@functools.cache
def _schema_validator(text: str):
    jsonschema = _need("jsonschema", "jsonschema", "the json_schema assertion")
    schema = json.loads(text)
    return jsonschema.validators.validator_for(schema)(schema)


def _reading_grade(text: str) -> float:
    textstat = _need("textstat", "textstat", "the reading_grade assertion")
    return float(textstat.flesch_kincaid_grade(text))


def languages_known() -> set[str]:
    _need("langdetect", "langdetect", "the language assertion")
    from importlib import resources
    return {p.name for p in (resources.files("langdetect") / "profiles").iterdir()}


def check_languages(codes: list[str]) -> None:
    if not codes:
        raise ValueError("is empty; give a language code such as en")
    known = languages_known()
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise ValueError(f"unknown language code {unknown[0]!r}; langdetect knows {', '.join(sorted(known))}")


def detect_language(text: str) -> str | None:
    _need("langdetect", "langdetect", "the language assertion")
    from langdetect import DetectorFactory, LangDetectException, detect
    DetectorFactory.seed = 0  # langdetect samples: fixed, the same answer gets the same language every run
    try:
        return detect(text)
    except LangDetectException:  # no letters to go on
        return None


def passes(config: dict, pred: Any) -> bool:
    """Whether one answer passes one assertion (its configuration as stored)."""
    text = answer_text(pred)
    kind = config["type"]
    if kind == "word_count":
        return in_range(words(text), config)
    if kind == "sentence_count":
        return in_range(sentences(text), config)
    if kind == "contains":
        found = _matches(text, config)
        return all(found) if config.get("all") else any(found)
    if kind == "not_contains":
        return not any(_matches(text, config))
    if kind == "starts_with":
        return _starts_with(text, config)
    if kind == "is_json":
        return _json(text)[0]
    if kind == "json_schema":
        ok, value = _json(text)
        return ok and _schema_validator(json.dumps(config["value"], sort_keys=True)).is_valid(value)
    if kind == "reading_grade":
        return bool(re.search(r"\w", text)) and in_range(_reading_grade(text), config)
    if kind == "language":
        return detect_language(text) in config["value"]
    if kind == "no_refusal":
        return bool(text.strip()) and REFUSAL.search(text) is None
    raise ValueError(f"unknown assertion type {kind!r}")


def assertion_metrics(configs: list[dict]) -> dict[str, Metric]:
    """One pass/fail metric per assertion, and `assertions`: the share of answers passing all of them."""
    out: dict[str, Metric] = {}
    for config in configs:
        name = config.get("name") or config["type"]
        out[name] = Metric(name, functools.partial(_item, config), needs_target=False)
    if configs:
        out["assertions"] = Metric("assertions", functools.partial(_all, tuple(json.dumps(c) for c in configs)),
                                   needs_target=False)
    return out


def _item(config: dict, pred: Any, target: Any) -> float:
    return float(passes(config, pred))


def _all(configs: tuple[str, ...], pred: Any, target: Any) -> float:
    return float(all(passes(json.loads(c), pred) for c in configs))
