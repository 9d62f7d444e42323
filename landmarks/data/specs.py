"""How a dataset is named (docs/DESIGN.md, "Data"): a path, ``a,b``, ``synthetic`` or ``synthetic:N``.

Kept free of torch so that ``python -m landmarks.data`` starts fast.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from landmarks.errors import ConfigError, DataError

# Seeds of the synthetic sets of one run: train ``seed``, validation ``seed + VAL_SEED_OFFSET``,
# eval ``seed + EVAL_SEED_OFFSET``, so that no two of them share a generated face.
VAL_SEED_OFFSET = 10_000_000
EVAL_SEED_OFFSET = 20_000_000


DATA_ROOT_ENV = "LANDMARKS_DATA"  # the folder that holds a user's datasets (e.g. 300w/, wflw/)


def data_root() -> Path:
    """Where relative dataset names of recipes and benchmarks point: ``$LANDMARKS_DATA``, else ``data/``."""
    return Path(os.environ.get(DATA_ROOT_ENV) or "data")


def dataset_name(path: str | Path, root: str | Path | None = None) -> str:
    """A dataset's name for reports and manifests: its path below ``root`` (default :func:`data_root`)
    when it lies there, else as given if relative, else its last two parts; never a machine's
    absolute path."""
    text = str(path)
    if is_synthetic_spec(text):
        return text
    resolved = Path(text).resolve()
    base = Path(root if root is not None else data_root()).resolve()
    if resolved.is_relative_to(base):
        return resolved.relative_to(base).as_posix()
    if not Path(text).is_absolute() and ".." not in Path(text).parts:
        return Path(text).as_posix()
    return "/".join(resolved.parts[-2:])


def is_synthetic_spec(spec: str | Path) -> bool:
    """``synthetic`` or ``synthetic:N`` names the built-in generator, not a path."""
    text = str(spec)
    return text == "synthetic" or text.startswith("synthetic:")


def split_spec(spec: str | Path | Sequence[str]) -> list[str]:
    """A path, a comma-separated list of paths, or a sequence of them -> list of single specs.

    An existing path is never split, so a folder with a comma in its name still works.
    """
    if isinstance(spec, str | Path):
        text = str(spec)
        items = [text] if Path(text).exists() else text.split(",")
    else:
        items = [str(s) for s in spec]
    items = [s.strip() for s in items if s.strip()]
    if not items:
        raise ConfigError("no dataset given")
    return items


def parse_synthetic_spec(spec: str, default_count: int) -> int:
    """``synthetic`` -> ``default_count``; ``synthetic:N`` -> N."""
    if spec == "synthetic":
        return default_count
    count = spec.removeprefix("synthetic:")
    if not count.isdigit() or int(count) < 1:
        raise ConfigError(f"bad dataset {spec!r}: expected 'synthetic' or 'synthetic:N' with N >= 1")
    return int(count)


def synthetic_canvas_size(input_size: int) -> int:
    """Generated image side: at least 128, and ~15% above the crop so it is never upsampled much."""
    return max(128, round(input_size * 1.15))


def distinct_labels(paths: Sequence[Path]) -> list[str]:
    """Shortest trailing path parts that tell the datasets apart (``helen/testset``, ...)."""
    resolved = [p.resolve() for p in paths]
    for depth in range(1, max(len(p.parts) for p in resolved) + 1):
        labels = ["/".join(p.parts[-depth:]) for p in resolved]
        if len(set(labels)) == len(labels):
            return labels
    raise DataError(f"the same dataset is named twice: {', '.join(map(str, paths))}")
