"""The arm registry: each arm type is one class, registered under the type names of its config.

It imports nothing of tunewise, so the task model (config) and the arm modules can both use it.
"""

from __future__ import annotations

from typing import Callable, get_args

_TYPES: dict[str, type] = {}
_LISTENERS: list[Callable[[list[type]], None]] = []


def register(cls: type) -> type:
    """Class decorator: make an `Arm` subclass available by the `type` literal(s) of its `Config`.

    The task's `arms:` field accepts the new type from then on (its union is rebuilt).
    """
    for name in get_args(cls.Config.model_fields["type"].annotation):
        _TYPES[name] = cls
    for listener in _LISTENERS:
        listener(_configs())
    return cls


def _configs() -> list[type]:
    """Each registered config model once (an arm class may serve several type names)."""
    return list(dict.fromkeys(c.Config for c in _TYPES.values()))


def on_register(listener: Callable[[list[type]], None]) -> None:
    """Call `listener` with every registered config model now and after each registration."""
    _LISTENERS.append(listener)
    if _TYPES:
        listener(_configs())


def arm_class(type_name: str) -> type:
    if type_name not in _TYPES:
        raise KeyError(f"unknown arm type {type_name!r}; known: {', '.join(sorted(_TYPES))}")
    return _TYPES[type_name]


def family(type_name: str) -> str | None:
    cls = _TYPES.get(type_name)
    return cls.family if cls else None


def method(type_name: str, decoding: str | None = None) -> str:
    """How the report names an arm's method, e.g. 'prompt: few-shot (scored labels)'."""
    cls = _TYPES.get(type_name)
    text = cls.methods.get(type_name, type_name) if cls else type_name
    return text + (" (scored labels)" if decoding == "constrained" else "")


def types() -> list[str]:
    return list(_TYPES)


def build(config, task, labels: list[str], configs: dict | None = None):
    """An arm from its configuration; `configs` (name -> config) resolves references to other arms."""
    return arm_class(config.type)(config, task, labels, configs or {})
