"""Assertions: deterministic checks of one answer (its length, what it contains, its JSON, its reading level,
its language, a refusal), each a pass/fail metric, so pass rates get intervals and arms paired tests.

Each assertion type is one class: its schema (the task file's fields) and its `check` of one answer's text,
registered like a plugin's. The checks that need a library (jsonschema, textstat, langdetect) import it
when first used; a missing one
says which `pip install` brings it.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..errors import MissingDependencyError
from ..registry import find, register_assertion
from ..task.schema import AssertionSettings, FieldError, assertion_metric_name
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


# -- the assertion types: each its schema and its check --------------------------------------------------------
class _Range(AssertionSettings):
    min: float | None = Field(None, ge=0)
    max: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _bounds(self):
        if self.min is None and self.max is None:
            raise ValueError("needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise FieldError(f"min {self.min:g} is above max {self.max:g}", "min")
        return self

    def within(self, value: float) -> bool:
        return in_range(value, {"min": self.min, "max": self.max})


@register_assertion
class CountAssertion(_Range):
    """The answer's words (or sentences) number between min and max."""
    type: Literal["word_count", "sentence_count"]

    def check(self, text: str) -> bool:
        return self.within(words(text) if self.type == "word_count" else sentences(text))


@register_assertion
class TextAssertion(AssertionSettings):
    """contains: one of the values occurs (all: every one); not_contains: none does; starts_with: the answer
    begins with one. Values are plain text, or regular expressions with regex: true."""
    type: Literal["contains", "not_contains", "starts_with"]
    value: list[str]
    regex: bool = False
    case_sensitive: bool = False
    all: bool = Field(False, description="contains only: every value must occur")

    @field_validator("value", mode="before")
    @classmethod
    def _one_value(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _values(self):
        if not self.value:
            raise FieldError("is empty; give the text (or regex) to look for", "value")
        for i, item in enumerate(self.value):
            if not item:
                raise FieldError("an empty value matches every answer; remove it", "value", i)
            if self.regex:
                try:
                    re.compile(item)
                except re.error as err:
                    raise FieldError(f"{item!r} is not a valid regular expression: {err}", "value", i) from None
        if self.all and self.type != "contains":
            raise FieldError(f"applies to contains, not {self.type}", "all")
        return self

    def check(self, text: str) -> bool:
        config = self.model_dump()
        if self.type == "starts_with":
            return _starts_with(text, config)
        found = _matches(text, config)
        if self.type == "not_contains":
            return not any(found)
        return all(found) if self.all else any(found)


@register_assertion
class JsonAssertion(AssertionSettings):
    """The answer is valid JSON."""
    type: Literal["is_json"]

    def check(self, text: str) -> bool:
        return _json(text)[0]


@register_assertion
class JsonSchemaAssertion(AssertionSettings):
    """The answer is JSON valid against a JSON Schema (jsonschema), given inline."""
    type: Literal["json_schema"]
    value: dict[str, Any] = Field(description="the JSON Schema, written in YAML or JSON")

    @field_validator("value")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_schema(value)
        return value

    def check(self, text: str) -> bool:
        ok, value = _json(text)
        return ok and _schema_validator(json.dumps(self.value, sort_keys=True)).is_valid(value)


@register_assertion
class ReadingGradeAssertion(_Range):
    """The answer's Flesch-Kincaid grade level (textstat) lies between min and max (US school grades)."""
    type: Literal["reading_grade"]
    min: float | None = Field(None)

    def check(self, text: str) -> bool:
        return bool(re.search(r"\w", text)) and self.within(_reading_grade(text))


@register_assertion
class LanguageAssertion(AssertionSettings):
    """The answer is written in one of the languages (ISO 639-1 codes such as en, fr), as langdetect tells."""
    type: Literal["language"]
    value: list[str]

    @field_validator("value", mode="before")
    @classmethod
    def _one_value(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("value")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        check_languages(value)
        return value

    def check(self, text: str) -> bool:
        return detect_language(text) in self.value


@register_assertion
class RefusalAssertion(AssertionSettings):
    """The answer does not refuse ("I can't help with that", "As an AI ...")."""
    type: Literal["no_refusal"]

    def check(self, text: str) -> bool:
        return bool(text.strip()) and REFUSAL.search(text) is None


def passes(config: dict, pred: Any) -> bool:
    """Whether one answer passes one assertion (its configuration as stored)."""
    return _assertion(json.dumps(config, sort_keys=True)).check(answer_text(pred))


@functools.cache
def _assertion(config: str) -> AssertionSettings:
    data = json.loads(config)
    cls = find("assertion", data["type"])
    if cls is None:
        raise ValueError(f"unknown assertion type {data['type']!r}")
    return cls.model_validate(data)


def assertion_metrics(configs: list[dict]) -> dict[str, Metric]:
    """One pass/fail metric per assertion, and `assertions`: the share of answers passing all of them."""
    out: dict[str, Metric] = {}
    for config in configs:
        name = assertion_metric_name(config)
        out[name] = Metric(name, functools.partial(_item, config), needs_target=False)
    if configs:
        out["assertions"] = Metric("assertions", functools.partial(_all, tuple(json.dumps(c) for c in configs)),
                                   needs_target=False)
    return out


def _item(config: dict, pred: Any, target: Any) -> float:
    return float(passes(config, pred))


def _all(configs: tuple[str, ...], pred: Any, target: Any) -> float:
    return float(all(passes(json.loads(c), pred) for c in configs))
