"""Validation carved from training folders: split by source photo (or person), never by file.

Several files can show the same photo or the same person: 300-W names the faces of one Helen or
AFW photo ``<photo>_1``, ``<photo>_2``; YouTube frames of one person are ``<split>_<person>_<n>``.
A file-level split would put near-duplicates on both sides and make validation optimistic.
:func:`group_of` strips that trailing face/frame number (one or two digits), so every file of a
photo, or of a person's clip, lands on the same side; LFPW's ``image_0001`` (four digits) is
its own group. Membership is a hash of the group name and a seed: stable across machines,
file orders and dataset sizes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal, TypeVar

from landmarks.errors import ConfigError, DataError

_FACE_NUMBER = re.compile(r"_\d{1,2}$")
T = TypeVar("T")


def group_of(key: str) -> str:
    """The photo/person a dataset key belongs to: its path without suffix and face number."""
    path = PurePosixPath(key)
    stem = _FACE_NUMBER.sub("", path.stem)
    return str(path.with_name(stem))


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


@dataclass(frozen=True)
class Holdout:
    """Which side of a group split to keep: ``fraction`` of the groups go to ``val``."""

    fraction: float
    part: Literal["train", "val"]
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ConfigError(f"validation split must be a fraction in (0, 1), got {self.fraction!r}")
        if self.part not in ("train", "val"):
            raise ConfigError(f"holdout part must be 'train' or 'val', got {self.part!r}")

    def in_val(self, key: str) -> bool:
        return _unit_hash(f"{self.seed}:{group_of(key)}") < self.fraction

    def select(self, items: Sequence[T], keys: Sequence[str]) -> list[T]:
        """The items (with their keys) that fall on this side; an empty side is an error."""
        want_val = self.part == "val"
        kept = [item for item, key in zip(items, keys, strict=True) if self.in_val(key) == want_val]
        if not kept:
            raise DataError(f"the {self.fraction:g} validation split leaves no {self.part} faces "
                            f"among {len(items)}; use more data or another fraction")
        return kept

    def describe(self) -> str:
        return (f"{self.fraction:.0%} of the source photos (file names without their trailing face number), "
                f"chosen by a hash of the name with seed {self.seed}")
