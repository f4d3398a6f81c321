"""The registry of training methods: one folder each under training/methods/, one line each below.

A method folder holds its network, loss, data preparation and training loop, and exposes `SPEC`, a
`MethodSpec`. Methods are imported when first asked for, so listing them costs nothing."""
from __future__ import annotations

from importlib import import_module

from cellpoint.training.methods.spec import ExportPlan, GraphExport, MethodSpec, Recipe, TrainRequest

# method id → module holding its SPEC
_BUILT_IN = {
    "objectness": "cellpoint.training.methods.objectness",
    "canonical_shape": "cellpoint.training.methods.canonical_shape",
    "wsispdr": "cellpoint.training.methods.wsispdr",
    "lacss": "cellpoint.training.methods.lacss",
    "point2mask": "cellpoint.training.methods.point2mask",
}
_LOADED: dict[str, MethodSpec] = {}

__all__ = ["ExportPlan", "GraphExport", "MethodSpec", "Recipe", "TrainRequest", "get_method", "method_names",
           "all_methods", "register"]


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method (replacing one of the same name). Returns it."""
    _LOADED[spec.name] = spec
    return spec


def method_names() -> list[str]:
    """Every method id, built-in ones first."""
    return list(dict.fromkeys([*_BUILT_IN, *_LOADED]))


def get_method(name: str) -> MethodSpec:
    """The method called `name` (or one of its aliases); KeyError naming the known ones otherwise."""
    if name in _BUILT_IN or name in _LOADED:
        return _load(name)
    for candidate in method_names():
        spec = _load(candidate)
        if name == spec.name or name in spec.aliases:
            return spec
    raise KeyError(f"unknown method {name!r} (known: {', '.join(method_names())})")


def all_methods() -> list[MethodSpec]:
    """Every registered method's spec."""
    return [_load(name) for name in method_names()]


def _load(name: str) -> MethodSpec:
    """The spec of a registered method id, importing its module the first time."""
    if name not in _LOADED:
        spec = import_module(_BUILT_IN[name]).SPEC
        if spec.name != name:
            raise RuntimeError(f"{_BUILT_IN[name]}.SPEC is named {spec.name!r}, registered as {name!r}")
        _LOADED[name] = spec
    return _LOADED[name]
