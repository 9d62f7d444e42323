"""The export run: checkpoint -> staged artifacts -> parity checks -> published files, or nothing.

Everything is built and checked in a private staging folder; only when every requested artifact
passes its parity bound are the files copied (atomically, sidecar before model) into ``out_dir``.
A parity failure raises :class:`~export.report.ParityError` and leaves ``out_dir`` untouched.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from export.config import ExportConfig
from export.onnx_export import export_onnx, write_fp16_variant
from export.parity import ParityFaces, check_parity, load_parity_faces, torch_reference
from export.report import ExportedArtifact, ParityError
from export.tflite_export import (
    check_converter_installed,
    is_installed,
    onnx_to_saved_model,
    saved_model_to_tflite,
)
from landmarks.artifact import sidecar_path, write_sidecar
from landmarks.atomic import atomic_path
from landmarks.cli import check_output_dir
from landmarks.errors import ConfigError, ModelError, UnsupportedBackendError, step
from landmarks.evaluate import EvalReport, Evaluator
from landmarks.metadata import ArtifactMetadata
from landmarks.models.checkpoint import file_sha256, load_checkpoint

log = logging.getLogger("export")


@dataclass(frozen=True)
class _Staged:
    """A checked artifact in the staging folder and where it goes."""

    staged: Path
    artifact: ExportedArtifact


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: ExportConfig | None = None,
    *,
    name: str | None = None,
    faces: ParityFaces | None = None,
) -> list[ExportedArtifact]:
    """Export a torch checkpoint; files are named ``<name>.onnx``, ``<name>.tflite`` (+ ``.json``).

    ``name`` defaults to the checkpoint's file stem. The artifacts' ``landmarks.source`` is
    ``<arch>@<sha256 of the checkpoint file>``.
    """
    config = config or ExportConfig()
    checkpoint = Path(checkpoint)
    _check_out_dir(out_dir)
    _check_tools(config)
    ckpt = load_checkpoint(checkpoint)
    try:
        model = ckpt.build()
    except ConfigError as err:
        raise ModelError(f"{checkpoint}: checkpoint of an unsupported architecture ({err})") from None
    _check_metadata_fits(model, ckpt.metadata, checkpoint)
    metadata = ckpt.metadata.replace(source=f"{ckpt.arch}@{file_sha256(checkpoint)}")
    return export_model(model, metadata, out_dir, config, name=name or checkpoint.stem, faces=faces)


def export_model(
    model: nn.Module,
    metadata: ArtifactMetadata,
    out_dir: str | os.PathLike[str],
    config: ExportConfig | None = None,
    *,
    name: str,
    faces: ParityFaces | None = None,
) -> list[ExportedArtifact]:
    """Export an in-memory model with ``forward_landmarks``; ``metadata.source`` is kept as given.

    ``faces`` (already cropped at the model's input size) replaces ``config.parity_data``.
    """
    config = config or ExportConfig()
    out_dir = Path(out_dir)
    if not name or Path(name).name != name or name.startswith("."):
        raise ConfigError(f"artifact name must be a plain file stem, got {name!r}")
    _check_out_dir(out_dir)
    _check_tools(config)
    if faces is None:
        faces = load_parity_faces(config.parity_data, metadata, config.parity_count)
    evaluator = Evaluator(faces, name=faces.source)
    reference = torch_reference(model, metadata.replace(layout="NCHW"), evaluator)
    with tempfile.TemporaryDirectory(prefix="landmarks-export-") as tmp:
        stage = Path(tmp)
        staged = _build_and_check(model, metadata, stage, out_dir, name, config, evaluator, reference)
        artifacts = [s.artifact for s in staged]
        if not all(a.passed for a in artifacts):
            raise ParityError(artifacts)
        for item in staged:
            _publish(item)
    return artifacts


def _build_and_check(
    model: nn.Module,
    metadata: ArtifactMetadata,
    stage: Path,
    out_dir: Path,
    name: str,
    config: ExportConfig,
    evaluator: Evaluator,
    reference: EvalReport,
) -> list[_Staged]:
    staged: list[_Staged] = []
    onnx_path = stage / f"{name}.onnx"
    log.info("exporting %s to ONNX (opset %d)", name, config.opset)
    with step(f"export: torch -> ONNX (opset {config.opset})", own_files=True):
        export_onnx(model, metadata, onnx_path, opset=config.opset)
    onnx_meta = metadata.replace(layout="NCHW")
    if "onnx" in config.formats:
        staged.append(_check(onnx_path, out_dir, "onnx", "fp32", onnx_meta, evaluator, reference,
                             config.parity_bound_onnx, config))
    if config.fp16:
        with step("export: FP16 ONNX variant", own_files=True):
            fp16_path = write_fp16_variant(onnx_path, stage / f"{name}.fp16.onnx")
        staged.append(_check(fp16_path, out_dir, "onnx", "fp16", onnx_meta, evaluator, reference,
                             config.parity_bound_fp16, config))
    if "tflite" in config.formats:
        log.info("converting %s to TFLite via onnx2tf", name)
        with step("export: ONNX -> TFLite (onnx2tf, TFLite converter)", own_files=True):
            saved_model = onnx_to_saved_model(onnx_path, stage / "tf")
            tflite_path = saved_model_to_tflite(saved_model, stage / f"{name}.tflite")
        tflite_meta = metadata.replace(layout="NHWC")
        write_sidecar(tflite_path, tflite_meta)
        staged.append(_check(tflite_path, out_dir, "tflite", "fp32", tflite_meta, evaluator, reference,
                             config.parity_bound_tflite, config))
    return staged


def _check(
    path: Path,
    out_dir: Path,
    fmt: str,
    precision: str,
    metadata: ArtifactMetadata,
    evaluator: Evaluator,
    reference: EvalReport,
    bound: float,
    config: ExportConfig,
) -> _Staged:
    with step(f"export: parity check of {path.name}", own_files=True):
        parity = check_parity(path, reference, evaluator, bound, num_threads=config.num_threads)
    log.info("%s: max |diff| %.2e (bound %.0e)", path.name, parity.max_abs_diff, bound)
    target = out_dir / path.name
    artifact = ExportedArtifact(
        path=target,
        format=fmt,
        precision=precision,
        runtime=parity.runtime,
        bytes=path.stat().st_size,
        sha256=file_sha256(path),
        metadata=metadata,
        parity=parity,
        sidecar=sidecar_path(target) if fmt == "tflite" else None,
    )
    return _Staged(path, artifact)


def _publish(item: _Staged) -> None:
    """Copy a checked artifact into place, sidecar first so no model is ever without its metadata."""
    artifact = item.artifact
    pairs = [(sidecar_path(item.staged), artifact.sidecar)] if artifact.sidecar is not None else []
    for source, target in [*pairs, (item.staged, artifact.path)]:
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
            tmp.chmod(_public_mode())


def _public_mode() -> int:
    """rw-r--r-- under the usual umask: artifacts are for sharing (atomic temp files start 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _check_metadata_fits(model: nn.Module, metadata: ArtifactMetadata, checkpoint: Path) -> None:
    """The checkpoint's metadata keys must describe its own architecture, or exports would lie."""
    arch_config = getattr(model, "config", None)
    for key in ("input_size", "num_points"):
        built = getattr(arch_config, key, None)
        if built is not None and built != getattr(metadata, key):
            raise ModelError(
                f"{checkpoint}: metadata says {key}={getattr(metadata, key)} but the model was "
                f"built with {key}={built}"
            )


def _check_out_dir(out_dir: str | os.PathLike[str]) -> None:
    check_output_dir(out_dir, "output folder")


def _check_tools(config: ExportConfig) -> None:
    """Every converter and runtime the requested formats need, before any work is done."""
    if not is_installed("onnxsim"):
        raise UnsupportedBackendError("ONNX export needs onnxsim: pip install onnxsim")
    if not is_installed("onnxruntime"):
        raise UnsupportedBackendError("ONNX parity checks need onnxruntime: pip install onnxruntime")
    if "tflite" in config.formats:
        check_converter_installed()
        if not (is_installed("ai_edge_litert") or is_installed("tensorflow")):
            raise UnsupportedBackendError(
                "TFLite parity checks need ai-edge-litert: pip install ai-edge-litert"
            )
