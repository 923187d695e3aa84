"""A task file read: YAML with its line numbers, so every error names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .. import registry
from ..errors import TaskFileError
from .model import Task
from .schema import FieldError, not_finite


def load_task(path: str | Path) -> Task:
    """Read a task file; errors name the file, the line and the field."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TaskFileError("task file not found", file=str(path)) from None
    except UnicodeDecodeError as err:
        raw = path.read_bytes()
        hint = "; it looks like UTF-16: save it as UTF-8" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise TaskFileError(f"not valid UTF-8 text{hint}", file=str(path), line=raw[: err.start].count(b"\n") + 1) \
            from None
    except OSError as err:
        raise TaskFileError(f"cannot read the task file ({err.strerror})", file=str(path)) from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise TaskFileError(f"invalid YAML: {problem}", file=str(path), line=line) from None
    except RecursionError:
        raise TaskFileError("invalid YAML: nested too deeply", file=str(path)) from None
    if not isinstance(data, dict):
        raise TaskFileError("expected a mapping of task fields at the top level", file=str(path), line=1)
    _no_repeated_keys(root, str(path))
    data.setdefault("base_dir", str(path.parent))
    return validate_task(data, file=str(path), root=root)


def _no_repeated_keys(node: yaml.Node | None, file: str, where: str = "") -> None:
    """YAML lets a later key silently replace an earlier one; a task file that says a thing twice is a mistake."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            field = f"{where}.{name}" if where else name
            if name in seen:
                raise TaskFileError(f"{name!r} is given twice; keep one (YAML would silently use the last)",
                                    file=file, line=key.start_mark.line + 1, field=field)
            seen.add(name)
            _no_repeated_keys(value, file, field)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_repeated_keys(item, file, f"{where}.{i}")


def validate_task(data: dict[str, Any], *, file: str = "<task>", root: yaml.Node | None = None) -> Task:
    try:
        return Task.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        cause = (first.get("ctx") or {}).get("error")
        raw_loc = (*first["loc"], *cause.loc) if isinstance(cause, FieldError) else first["loc"]
        loc = [str(p) for p in _file_loc(raw_loc)]
        line = _line_of(root, raw_loc) if root is not None else None
        field = ".".join(loc) or None
        message = str(cause) if isinstance(cause, ValueError) else first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "finite_number":
            message = not_finite(first["input"])
        elif first["type"] == "missing":
            message = "required, but missing"
        elif first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            kind = first["input"].get("type") if isinstance(first["input"], dict) else None
            what = "assertion" if loc[:1] == ["assertions"] else "arm"
            types = registry.names(what)
            message = (f"unknown {what} type {kind!r}" if kind is not None else f"an {what} needs a type") + \
                f"; {what} types: {', '.join(types)}"
        raise TaskFileError(message, file=file, line=line, field=field) from None


def line_of(file: str, field: str) -> int | None:
    """The task file's line of a field named as errors name it (arms.0.search.ks), or of the deepest part of
    it the file writes; None when the file cannot be read or writes none of it."""
    try:
        node = yaml.compose(Path(file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None
    line = None
    for part in field.split("."):
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _file_loc(loc: tuple) -> list:
    """An error location as the file names it: without the tags pydantic adds for union members
    (an arm's type, 'constrained-int', "literal['all']")."""
    out = []
    for part in loc:
        tagged = out and isinstance(out[-1], int) and len(out) >= 2 and (
            (out[-2] == "arms" and part in registry.arm_types())
            or (out[-2] == "assertions" and part in registry.names("assertion")))
        if tagged or (isinstance(part, str) and (part.startswith(("constrained-", "literal[", "function-"))
                                                  or part in ("int", "str", "float"))):
            continue
        out.append(part)
    return out


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Walk a composed YAML tree along a pydantic error location; return the deepest line found."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                continue  # pydantic adds union tags to loc that the file does not have
            key, node = match
            # an unknown key is reported at its own line; a bad value at the value's line
            line = key.start_mark.line + 1 if node is None else node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
    return line
