"""Datasets: the formats of docs/DESIGN.md "Data", format detection, crops with augmentation, checks.

``open_dataset(spec, input_size=...)`` is the entry point; ``python -m landmarks.data PATH``
checks a dataset and lists its bad files.

Names are resolved lazily (PEP 562) so that the readers and the CLI do not import torch,
which only the datasets need: ``python -m landmarks.data`` then starts in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from landmarks.data.augment import AugmentConfig, Augmenter, crop_matrix, sample_rng
    from landmarks.data.dataset import (
        AnyFaceDataset,
        ConcatFaceDataset,
        FaceDataset,
        SyntheticFaceDataset,
        open_dataset,
    )
    from landmarks.data.formats import (
        FORMATS,
        BadFile,
        FaceRecord,
        RestrictedUnpickler,
        detect_format,
        load_records,
        read_image,
        read_pts,
        restricted_loads,
        scan,
        write_pts,
    )
    from landmarks.data.inspection import DatasetReport, inspect_dataset

_EXPORTS = {
    "landmarks.data.augment": ("AugmentConfig", "Augmenter", "crop_matrix", "sample_rng"),
    "landmarks.data.dataset": ("AnyFaceDataset", "ConcatFaceDataset", "FaceDataset",
                               "SyntheticFaceDataset", "open_dataset"),
    "landmarks.data.formats": ("FORMATS", "BadFile", "FaceRecord", "RestrictedUnpickler", "detect_format",
                               "load_records", "read_image", "read_pts", "restricted_loads", "scan",
                               "write_pts"),
    "landmarks.data.inspection": ("DatasetReport", "inspect_dataset"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "FORMATS",
    "AnyFaceDataset",
    "AugmentConfig",
    "Augmenter",
    "BadFile",
    "ConcatFaceDataset",
    "DatasetReport",
    "FaceDataset",
    "FaceRecord",
    "RestrictedUnpickler",
    "SyntheticFaceDataset",
    "crop_matrix",
    "detect_format",
    "inspect_dataset",
    "load_records",
    "open_dataset",
    "read_image",
    "read_pts",
    "restricted_loads",
    "sample_rng",
    "scan",
    "write_pts",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'landmarks.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
