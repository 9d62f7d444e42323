"""What an export returns: one record per artifact, ready for the recipe manifest (docs/DESIGN.md, "Manifest")."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landmarks.errors import GateRejected
from landmarks.metadata import ArtifactMetadata


@dataclass(frozen=True)
class ParityResult:
    """An exported artifact compared with its torch reference on the same faces.

    ``max_abs_diff`` is in ``xy_norm`` units (fractions of the crop side); NME values are
    ``nme_io`` in percent, each against the faces' ground truth.
    """

    runtime: str
    data: str
    num_faces: int
    max_abs_diff: float
    mean_abs_diff: float
    nme_io_reference: float
    nme_io_candidate: float
    bound: float

    @property
    def nme_io_diff(self) -> float:
        return self.nme_io_candidate - self.nme_io_reference

    @property
    def passed(self) -> bool:
        return math.isfinite(self.max_abs_diff) and self.max_abs_diff <= self.bound

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": "torch",
            "runtime": self.runtime,
            "data": self.data,
            "num_faces": self.num_faces,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "bound": self.bound,
            "nme_io_reference": self.nme_io_reference,
            "nme_io": self.nme_io_candidate,
            "nme_io_diff": self.nme_io_diff,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class ExportedArtifact:
    """One exported file. ``path`` is where it lands on success; ``sidecar`` is the TFLite JSON."""

    path: Path
    format: str
    precision: str
    runtime: str
    bytes: int
    sha256: str
    metadata: ArtifactMetadata
    parity: ParityResult
    sidecar: Path | None = None

    @property
    def passed(self) -> bool:
        return self.parity.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "format": self.format,
            "precision": self.precision,
            "runtime": self.runtime,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "sidecar": str(self.sidecar) if self.sidecar else None,
            **self.metadata.to_strings(),
            "parity": self.parity.to_dict(),
        }

    def summary(self) -> str:
        p = self.parity
        verdict = "ok" if p.passed else "PARITY FAILED"
        return (
            f"{self.path.name:<28} {self.format:<6} {self.precision:<4} {self.bytes / 1e6:8.2f} MB  "
            f"max|d|={p.max_abs_diff:.2e} (bound {p.bound:.0e})  "
            f"nme_io {p.nme_io_reference:.3f}% -> {p.nme_io_candidate:.3f}%  {verdict}"
        )


class ParityError(GateRejected):
    """An export exceeded its parity bound (its acceptance check against the torch model); nothing
    was written. Exit status 1, as for any rejected artifact."""

    def __init__(self, artifacts: list[ExportedArtifact]) -> None:
        self.artifacts = artifacts
        failed = [a for a in artifacts if not a.passed]
        names = ", ".join(
            f"{a.path.name} (max|d| {a.parity.max_abs_diff:.2e} > {a.parity.bound:.0e})" for a in failed
        )
        super().__init__(f"parity check failed, nothing written: {names}")
