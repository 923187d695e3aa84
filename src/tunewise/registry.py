"""The one registry: arm types, metrics, assertion types and backends, each found by name.

Built-ins register exactly as a third-party package does. A package names a module in one of the entry
point groups below; loading it imports that module, whose decorators register what it defines:

    [project.entry-points."tunewise.metrics"]
    length = "my_package.length"          # my_package/length.py calls register_metric(Metric(...))

Built-in modules are loaded through the same `load_plugins` as entry points (as simonw/llm loads its
default plugins through its own hooks). The registry imports only `tunewise.traits`, so every layer may use it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Literal, get_args

from .traits import Traits

Kind = Literal["arm", "metric", "assertion", "backend"]
GROUPS: dict[str, str] = {"metric": "tunewise.metrics", "assertion": "tunewise.assertions",
                          "backend": "tunewise.backends", "arm": "tunewise.arms"}  # loaded in this order
# the built-in modules, loaded like entry points; each registers what it defines when imported
BUILTINS: dict[str, tuple[str, ...]] = {
    "metric": ("tunewise.measure.metrics",),
    "assertion": ("tunewise.measure.assertions",),
    "backend": ("tunewise.backends.endpoint", "tunewise.backends.fake", "tunewise.backends.vllm",
                "tunewise.backends.local"),
    "arm": ("tunewise.arms.prompt", "tunewise.arms.searched", "tunewise.arms.retrieval", "tunewise.arms.tuned"),
}

_ENTRIES: dict[str, dict[str, Any]] = {kind: {} for kind in GROUPS}
_LISTENERS: dict[str, list[Callable[[list], None]]] = {kind: [] for kind in GROUPS}
_LOADED = False
_LOADING = False  # while the built-ins and plugins load, listeners hear once at the end, not at every entry


def register(kind: Kind, name: str, entry: Any) -> Any:
    """Make `entry` available as the `kind` called `name`; listeners of the kind hear of it."""
    _ENTRIES[kind][name] = entry
    if not _LOADING:
        _notify(kind)
    return entry


def _notify(kind: Kind) -> None:
    for listener in _LISTENERS[kind]:
        listener(entries(kind))


def unregister(kind: Kind, name: str) -> None:
    """Remove a registered name (a plugin's tests clean up after themselves); listeners hear of it."""
    _ENTRIES[kind].pop(name, None)
    _notify(kind)


def get(kind: Kind, name: str) -> Any:
    """The registered entry; KeyError naming the known ones when there is none."""
    load_plugins()
    if name not in _ENTRIES[kind]:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(sorted(_ENTRIES[kind]))}")
    return _ENTRIES[kind][name]


def find(kind: Kind, name: str) -> Any | None:
    load_plugins()
    return _ENTRIES[kind].get(name)


def names(kind: Kind) -> list[str]:
    load_plugins()
    return list(_ENTRIES[kind])


def entries(kind: Kind) -> list:
    """Each registered entry once, in registration order (one entry may be registered under several names)."""
    return list({id(e): e for e in _ENTRIES[kind].values()}.values())


def on_register(kind: Kind, listener: Callable[[list], None]) -> None:
    """Call `listener` with the kind's entries now (when there are any) and after each registration."""
    _LISTENERS[kind].append(listener)
    if _ENTRIES[kind]:
        listener(entries(kind))


def load_plugins() -> None:
    """Import the built-in modules, then every installed package's entry points, once."""
    global _LOADED, _LOADING
    if _LOADED:
        return
    _LOADED = _LOADING = True  # set first: the modules imported here call back into the registry
    try:
        for kind, group in GROUPS.items():
            for module in BUILTINS[kind]:
                importlib.import_module(module)
            for point in entry_points(group=group):
                point.load()
    finally:
        _LOADING = False
        for kind in GROUPS:  # e.g. the task's `arms:` union, rebuilt once with every arm type
            if _ENTRIES[kind]:
                _notify(kind)


# -- the four kinds' decorators ------------------------------------------------------------------------------
def register_arm(cls: type) -> type:
    """Class decorator: an `Arm` subclass, by the `type` literal(s) of its `Config`.

    The task's `arms:` field accepts the new type from then on (its union is rebuilt)."""
    for name in get_args(cls.Config.model_fields["type"].annotation):
        register("arm", name, cls)
    return cls


def register_assertion(cls: type) -> type:
    """Class decorator: an assertion type, one pydantic class (its schema) with `check(text) -> bool`."""
    for name in get_args(cls.model_fields["type"].annotation):
        register("assertion", name, cls)
    return cls


def register_metric(metric: Any) -> Any:
    """A `Metric` (tunewise.measure.metrics), by its name."""
    return register("metric", metric.name, metric)


@dataclass(frozen=True)
class BackendType:
    """Which model names a backend takes, and how to build it; `create` imports the heavy parts lazily."""
    name: str
    takes: Callable[[str, dict], bool]     # (model name, the task's endpoints) -> whether it is this one's
    create: Callable[..., Any]             # (model, device=, batch_size=, endpoints=) -> Backend
    remote: bool = False                   # answers come from elsewhere: no weights here to train or count
    priority: int = 0                      # asked first when higher; the catch-all local backend is lowest
    weights: Callable[[str], str] = lambda model: model  # the local weights a model name stands for


def register_backend(backend: BackendType) -> BackendType:
    return register("backend", backend.name, backend)


def backend_for(model: str, endpoints: dict | None = None) -> BackendType:
    """The registered backend that takes this model name (the highest priority that does)."""
    load_plugins()
    ordered = sorted(entries("backend"), key=lambda b: -b.priority)
    return next(b for b in ordered if b.takes(model, endpoints or {}))


# -- what the rest of tunewise asks about arm types ---------------------------------------------------------
def arm_class(type_name: str) -> type:
    return get("arm", type_name)


def arm_types() -> list[str]:
    return names("arm")


def traits(type_name: str) -> Traits | None:
    """What an arm type is (trains weights, changes only the prompt, ...); None for a type not registered."""
    cls = find("arm", type_name)
    return cls.traits if cls else None


def family(type_name: str) -> str | None:
    found = traits(type_name)
    return found.family if found else None


def method(type_name: str, decoding: str | None = None) -> str:
    """How the report names an arm's method, e.g. 'prompt: few-shot (scored labels)'."""
    cls = find("arm", type_name)
    text = cls.methods.get(type_name, type_name) if cls else type_name
    return text + (" (scored labels)" if decoding == "constrained" else "")
