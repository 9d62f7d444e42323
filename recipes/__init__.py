"""Recipes: the whole chain (teacher -> distill -> prune -> export -> quantize -> gate) from one YAML file.

    python -m recipes run recipes/quickstart.yaml --out runs/quickstart

Writes the artifact folder of docs/DESIGN.md, "Manifest" (``manifest.json``, ``report.md``, ``release/``,
``rejected/``, ``checkpoints/``); stages are cached by the content hash of their inputs.
Names resolve lazily, so ``import recipes`` loads neither torch nor pydantic.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Recipe", "load_recipe", "run_recipe"]


def __getattr__(name: str) -> Any:
    if name in ("Recipe", "load_recipe"):
        from recipes import schema

        return getattr(schema, name)
    if name == "run_recipe":
        from recipes.runner import run_recipe

        return run_recipe
    raise AttributeError(f"module 'recipes' has no attribute {name!r}")
