"""Model registry (timm style): ``create_model('pfld025')``, ``list_models('pfld*')``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from landmarks.errors import ConfigError

_MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_F = TypeVar("_F", bound=Callable[..., nn.Module])


def register_model(fn: _F) -> _F:
    """Register a builder under its function name; the name is what users type."""
    if fn.__name__ in _MODEL_BUILDERS:
        raise RuntimeError(f"model {fn.__name__!r} registered twice")
    _MODEL_BUILDERS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    _import_builtin_models()
    return sorted(name for name in _MODEL_BUILDERS if fnmatch.fnmatch(name, pattern))


def is_model(name: str) -> bool:
    _import_builtin_models()
    return name in _MODEL_BUILDERS


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model; an unknown name lists the valid ones."""
    _import_builtin_models()
    if name not in _MODEL_BUILDERS:
        raise ConfigError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    return _MODEL_BUILDERS[name](**kwargs)


def _import_builtin_models() -> None:
    # Importing the architecture modules runs their @register_model decorators.
    from landmarks.models import fan, pfld  # noqa: F401
