"""Self-describing artifacts (docs/DESIGN.md, "Artifact metadata"): how to feed a model and read its output.

ONNX files carry these keys in ``metadata_props``; TFLite files in a sidecar ``<file>.json``;
torch checkpoints in their ``metadata`` entry. This module is the only place the key names
and their string encoding live.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from landmarks.coords import DEFAULT_CROP_SCALE
from landmarks.errors import ModelError

PREFIX = "landmarks."
LAYOUTS = ("NCHW", "NHWC")
# xy_norm: points normalized to the input crop (x / W, y / H); xy_pixels: pixel coordinates of the crop
OUTPUTS = ("xy_norm", "xy_pixels")
OPTIONAL = ("source", "output_name", "points_slice")  # keys a reader does without


def parse_slice(text: str) -> tuple[int, int]:
    """``"0:136"`` -> ``(0, 136)``: the values of a model's output that hold the points."""
    start, sep, end = str(text).partition(":")
    try:
        bounds = (int(start), int(end))
    except ValueError:
        bounds = (-1, -1)
    if not sep or bounds[0] < 0 or bounds[1] <= bounds[0]:
        raise ModelError(f"a points slice is START:END with 0 <= START < END, got {text!r}")
    return bounds


@dataclass(frozen=True)
class ArtifactMetadata:
    """Preprocessing and output convention of one model artifact."""

    num_points: int = 68
    input_size: int = 112
    layout: str = "NCHW"
    color: str = "RGB"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_scale: float = DEFAULT_CROP_SCALE
    output: str = "xy_norm"
    source: str = field(default="unknown")
    # Which output holds the points (empty: the first) and which of its values, per image (None: all
    # of them, which must be 2 * num_points): for models whose head also outputs pose or flags.
    output_name: str = ""
    points_slice: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.num_points <= 0 or self.input_size <= 0:
            raise ModelError(f"metadata: num_points and input_size must be positive, got {self}")
        if self.layout not in LAYOUTS:
            raise ModelError(f"metadata: layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.color not in ("RGB", "BGR"):
            raise ModelError(f"metadata: color must be RGB or BGR, got {self.color!r}")
        if self.output not in OUTPUTS:
            raise ModelError(f"metadata: output must be one of {OUTPUTS}, got {self.output!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ModelError("metadata: mean and std need three values, std positive")
        if self.crop_scale <= 0:
            raise ModelError(f"metadata: crop_scale must be positive, got {self.crop_scale}")
        if self.points_slice is not None:
            start, end = self.points_slice
            if end - start != 2 * self.num_points:
                raise ModelError(f"metadata: points slice {start}:{end} holds {end - start} values, "
                                 f"not 2 x {self.num_points} points")

    def replace(self, **changes: Any) -> ArtifactMetadata:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return ArtifactMetadata(**values)

    def to_strings(self) -> dict[str, str]:
        """The metadata key/value strings (``landmarks.mean`` -> ``"0.5,0.5,0.5"``)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("output_name", "points_slice") and not value:
                continue  # unset: the keys of a model that needs neither stay as they always were
            if f.name == "points_slice":
                value = f"{value[0]}:{value[1]}"
            elif isinstance(value, tuple):
                value = ",".join(_fmt(v) for v in value)
            elif isinstance(value, float):
                value = _fmt(value)
            out[PREFIX + f.name] = str(value)
        return out

    @classmethod
    def from_strings(cls, props: dict[str, str], where: str = "artifact") -> ArtifactMetadata:
        """Parse metadata strings; a missing or malformed key is a :class:`ModelError`."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = PREFIX + f.name
            if key not in props:
                if f.name in OPTIONAL:
                    continue
                raise ModelError(f"{where}: missing metadata key {key!r} (docs/DESIGN.md, 'Artifact metadata')")
            raw = props[key]
            try:
                if f.name in ("num_points", "input_size"):
                    values[f.name] = int(raw)
                elif f.name == "crop_scale":
                    values[f.name] = float(raw)
                elif f.name in ("mean", "std"):
                    values[f.name] = tuple(float(v) for v in raw.split(","))
                elif f.name == "points_slice":
                    values[f.name] = parse_slice(raw)
                else:
                    values[f.name] = raw
            except (ValueError, ModelError):
                raise ModelError(f"{where}: metadata key {key!r} has a malformed value {raw!r}") from None
        return cls(**values)


def _fmt(value: float) -> str:
    return repr(float(value)).removesuffix(".0") if float(value).is_integer() else repr(float(value))
