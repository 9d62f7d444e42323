"""Check a dataset before training on it: every bad file with its reason, and a summary.

Loading stops at the first bad file; this reads everything (decoding every image) so a user
can fix a whole folder in one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landmarks.coords import DEFAULT_CROP_SCALE, landmark_box
from landmarks.data.formats import BadFile, FaceRecord, read_image, scan
from landmarks.data.specs import is_synthetic_spec, parse_synthetic_spec, synthetic_canvas_size
from landmarks.errors import DataError

Progress = Callable[[Iterable[FaceRecord]], Iterable[FaceRecord]]


@dataclass(frozen=True)
class DatasetReport:
    """Summary of one dataset; ``problems`` lists every file that cannot be used."""

    spec: str
    format: str
    num_faces: int  # usable faces
    num_points: int | None
    image_size_min: tuple[int, int] | None  # (width, height)
    image_size_max: tuple[int, int] | None
    crop_side_min: float | None  # crop_scale * face box side, source pixels
    crop_side_max: float | None
    problems: tuple[BadFile, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def inspect_dataset(spec: str | Path, *, crop_scale: float = DEFAULT_CROP_SCALE, input_size: int = 112,
                    synthetic_count: int = 1000, progress: Progress | None = None) -> DatasetReport:
    """Read and check every face of one dataset (a path, ``synthetic`` or ``synthetic:N``)."""
    if is_synthetic_spec(spec):
        return _synthetic_report(str(spec), synthetic_count, input_size)
    result = scan(spec)
    problems = list(result.problems)
    sizes: dict[Path, tuple[int, int] | None] = {}
    good, sides = [], []
    for record in (progress or iter)(result.records):
        size = _image_size(record.image_path, sizes, problems)
        if size is None:
            continue
        reason = _outside_reason(record.points, size)
        if reason is not None:
            problems.append(BadFile(record.image_path, f"{record.key}: {reason}"))
            continue
        good.append(record)
        x0, y0, x1, y1 = landmark_box(record.points)
        sides.append(crop_scale * max(x1 - x0, y1 - y0))
    seen = [s for s in sizes.values() if s is not None]
    return DatasetReport(
        spec=str(spec), format=result.format, num_faces=len(good),
        num_points=result.records[0].num_points if result.records else None,
        image_size_min=min(seen, key=lambda s: s[0] * s[1]) if seen else None,
        image_size_max=max(seen, key=lambda s: s[0] * s[1]) if seen else None,
        crop_side_min=min(sides) if sides else None, crop_side_max=max(sides) if sides else None,
        problems=tuple(problems),
    )


def _image_size(path: Path, cache: dict[Path, tuple[int, int] | None],
                problems: list[BadFile]) -> tuple[int, int] | None:
    """(width, height) of a decodable image; an undecodable one is recorded once."""
    if path not in cache:
        try:
            image = read_image(path)
            cache[path] = (image.shape[1], image.shape[0])
        except DataError as err:
            problems.append(BadFile(path, str(err).removeprefix(f"{path}: ")))
            cache[path] = None
    return cache[path]


def _outside_reason(points: np.ndarray, size: tuple[int, int]) -> str | None:
    """Continuous coordinates are in frame when ``0 <= x <= W`` and ``0 <= y <= H``."""
    w, h = size
    outside = (points[:, 0] < 0) | (points[:, 0] > w) | (points[:, 1] < 0) | (points[:, 1] > h)
    if not outside.any():
        return None
    i = int(np.argmax(outside))
    x, y = points[i]
    return (f"{int(outside.sum())} point(s) outside the {w}x{h} image "
            f"(e.g. point {i} at ({x:.1f}, {y:.1f}))")


def _synthetic_report(spec: str, default_count: int, input_size: int) -> DatasetReport:
    count = parse_synthetic_spec(spec, default_count)
    side = synthetic_canvas_size(input_size)
    return DatasetReport(spec, "synthetic", count, 68, (side, side), (side, side), None, None, ())
