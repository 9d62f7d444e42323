"""The 3D face template: mean shape, deformation modes and auxiliary outlines, from JSON.

Numbers live in ``template.json`` (data, not code) and are parsed once per process.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

TEMPLATE_PATH = Path(__file__).with_name("template.json")
NUM_POINTS = 68
# Aux outlines follow the contour and brows: their points move with those landmarks.
_AUX_ANCHORS = np.arange(27)


@dataclass(frozen=True)
class Mode:
    """One deformation: ``points + coefficient * displacement`` for coefficients in ``range``."""

    name: str
    description: str
    range: tuple[float, float]
    displacement: np.ndarray  # [68, 3], mm at coefficient 1


@dataclass(frozen=True)
class FaceTemplate:
    """The parsed template; arrays are read-only because the instance is shared (cached)."""

    mean_shape: np.ndarray  # [68, 3] mm; x right, y down, z toward the camera
    modes: Mapping[str, Mode]
    aux: Mapping[str, np.ndarray]  # name -> [K, 3] mm outlines (forehead, hair, neck, ears)
    aux_weights: np.ndarray  # [K_total, 68]: how aux points follow landmark displacements
    head_centre: np.ndarray  # [3] mm, the pivot of head rotation

    @property
    def mode_names(self) -> tuple[str, ...]:
        return tuple(self.modes)

    def deform(self, coefficients: Mapping[str, float]) -> np.ndarray:
        """Landmark displacement ``[68, 3]`` for mode coefficients (unknown names are an error)."""
        total = np.zeros((NUM_POINTS, 3))
        for name, value in coefficients.items():
            if name not in self.modes:
                raise KeyError(f"unknown deformation mode {name!r} (known: {', '.join(self.modes)})")
            if value:
                total += value * self.modes[name].displacement
        return total


def _frozen(array: object, shape: tuple[int, ...] | None = None) -> np.ndarray:
    out = np.array(array, dtype=np.float64)
    if shape is not None and out.shape != shape:
        raise ValueError(f"template array has shape {out.shape}, expected {shape}")
    out.flags.writeable = False
    return out


def _aux_weights(mean: np.ndarray, aux_points: np.ndarray) -> np.ndarray:
    """Inverse-distance weights of each aux point on its 3 nearest contour/brow landmarks."""
    anchors = mean[_AUX_ANCHORS]
    dist = np.linalg.norm(aux_points[:, None, :] - anchors[None], axis=-1)
    nearest = np.argsort(dist, axis=1)[:, :3]
    weights = np.zeros((len(aux_points), NUM_POINTS))
    for row, idx in enumerate(nearest):
        w = 1.0 / (dist[row, idx] + 1.0)
        weights[row, _AUX_ANCHORS[idx]] = w / w.sum()
    return weights


def parse_template(data: Mapping[str, object]) -> FaceTemplate:
    """Validate and convert the JSON document."""
    mean = _frozen(data["mean_shape"], (NUM_POINTS, 3))
    modes = {
        name: Mode(
            name=name,
            description=str(spec["description"]),
            range=(float(spec["range"][0]), float(spec["range"][1])),
            displacement=_frozen(spec["displacement"], (NUM_POINTS, 3)),
        )
        for name, spec in dict(data["modes"]).items()
    }
    aux = {name: _frozen(points) for name, points in dict(data["aux"]).items()}
    weights = _aux_weights(mean, np.concatenate(list(aux.values())))
    weights.flags.writeable = False
    return FaceTemplate(
        mean_shape=mean,
        modes=MappingProxyType(modes),
        aux=MappingProxyType(aux),
        aux_weights=weights,
        head_centre=_frozen(data["head_centre"], (3,)),
    )


@functools.lru_cache(maxsize=1)
def load_template() -> FaceTemplate:
    """The packaged ``template.json``, parsed once per process."""
    with open(TEMPLATE_PATH, encoding="utf-8") as f:
        return parse_template(json.load(f))
