"""How a model that carries no metadata is described: one set of flags, one merge, everywhere.

Every command that takes a model (``landmarks.eval``, ``landmarks.predict``, ``quant.ptq``,
``export.describe``) and :class:`landmarks.api.FaceLandmarker` accept the same description::

    --input-size 112 --num-points 68 --layout NCHW --color BGR --mean 127,127,127 --std 127,127,127
    --crop-scale 1.2 --output NAME --points-slice 0:136 --points-unit pixels

:func:`model_metadata` merges it with what the file says (its ``landmarks.*`` metadata, and its
input shape): a flag fills a key the file lacks, a flag that contradicts the file is an error,
and a key neither gives takes the default of :class:`~landmarks.metadata.ArtifactMetadata`.
The input size and layout are read off a static input shape when the flags do not give them.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from landmarks.errors import ConfigError, ModelError
from landmarks.metadata import PREFIX, ArtifactMetadata, parse_slice

UNITS = {"norm": "xy_norm", "pixels": "xy_pixels"}


@dataclass(frozen=True)
class ModelDescription:
    """What the flags say about a model; ``None`` where they say nothing."""

    input_size: int | None = None
    num_points: int | None = None
    layout: str | None = None
    color: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    crop_scale: float | None = None
    output_name: str | None = None
    points_slice: tuple[int, int] | None = None
    output: str | None = None  # xy_norm / xy_pixels, from --points-unit

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def add_description_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the module docstring, in one group."""
    group = parser.add_argument_group(
        "model description", "for a model without landmarks.* metadata (a flag must agree with metadata it has)")
    group.add_argument("--input-size", type=int, default=None, metavar="S",
                       help="square input side in pixels (default: read off a static input shape)")
    group.add_argument("--num-points", type=int, default=None, metavar="N", help="points predicted (default 68)")
    group.add_argument("--layout", choices=("NCHW", "NHWC"), default=None,
                       help="input tensor layout (default: read off the input shape, else NCHW)")
    group.add_argument("--color", choices=("RGB", "BGR"), default=None, help="channel order (default RGB)")
    group.add_argument("--mean", default=None, metavar="M,M,M",
                       help="per-channel mean on the [0, 1] pixel scale, or on [0, 255] when a value is above 1 "
                            "(default 0.5,0.5,0.5)")
    group.add_argument("--std", default=None, metavar="S,S,S",
                       help="per-channel std, the same scale as --mean (default 0.5,0.5,0.5); e.g. (x - 127) / 127 "
                            "is --mean 127,127,127 --std 127,127,127, [0, 1] input is --mean 0,0,0 --std 1,1,1")
    group.add_argument("--crop-scale", type=float, default=None, metavar="F",
                       help="crop side / face box side the model was trained with (default 1.25; "
                            "landmarks.eval --sweep-crop-scale finds it)")
    group.add_argument("--output", dest="output_name", default=None, metavar="NAME",
                       help="the output that holds the points (default: the first)")
    group.add_argument("--points-slice", default=None, metavar="START:END",
                       help="the values of that output, per image, that hold the points (x, y interleaved), "
                            "when it holds more (pose, flags)")
    group.add_argument("--points-unit", choices=tuple(UNITS), default=None,
                       help="norm: points normalized to the input crop (default); pixels: input-crop pixels")


def description_from_args(args: argparse.Namespace) -> ModelDescription:
    """The :class:`ModelDescription` of parsed flags; a malformed value is a :class:`ConfigError`."""
    try:
        return ModelDescription(
            input_size=_positive(args.input_size, "--input-size"),
            num_points=_positive(args.num_points, "--num-points"),
            layout=args.layout,
            color=args.color,
            mean=_triple(args.mean, "--mean"),
            std=_triple(args.std, "--std"),
            crop_scale=args.crop_scale,
            output_name=args.output_name,
            points_slice=parse_slice(args.points_slice) if args.points_slice else None,
            output=UNITS[args.points_unit] if args.points_unit else None,
        )
    except ModelError as err:
        raise ConfigError(f"--points-slice: {err}") from None


def _positive(value: int | None, flag: str) -> int | None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag} must be at least 1, got {value}")
    return value


def _triple(text: str | None, flag: str) -> tuple[float, float, float] | None:
    """``"127,127,127"`` -> (0.498, 0.498, 0.498): values above 1 are on the [0, 255] scale."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ConfigError(f"{flag} must be one or three comma-separated numbers, got {text!r}")
    if any(v > 1.0 for v in values):
        values = tuple(v / 255.0 for v in values)
    return values  # type: ignore[return-value]


def file_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``landmarks.*`` keys a model file carries (none for a foreign model)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as err:  # protobuf's DecodeError and onnx's own: the file is not ONNX
            raise ModelError(f"{path}: not an ONNX model ({str(err).strip()[:200] or type(err).__name__})") from err
        return {p.key: p.value for p in model.metadata_props if p.key.startswith(PREFIX)}
    if suffix == ".tflite":
        from landmarks.artifact import read_sidecar, sidecar_path

        if not sidecar_path(path).is_file() and not path.with_suffix(".json").is_file():
            return {}
        return read_sidecar(path).to_strings()
    if suffix in (".pt", ".pth"):
        from landmarks.models.checkpoint import load_checkpoint

        return load_checkpoint(path).metadata.to_strings()
    return {}


def input_shape(path: str | os.PathLike[str]) -> tuple[list[int | None], int]:
    """The image input's shape (``None`` for a dynamic dimension) and how many image inputs there are."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        weights = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in weights]
        if not inputs:
            raise ModelError(f"{path}: the model has no input")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in inputs[0].type.tensor_type.shape.dim]
        return dims, len(inputs)
    if path.suffix.lower() == ".tflite":
        from landmarks.runtimes.tflite_runtime import interpreter_class

        details = interpreter_class()(model_path=str(path)).get_input_details()
        signature = details[0].get("shape_signature", details[0]["shape"])
        return [int(d) if d > 0 else None for d in signature], len(details)
    return [], 1


def _from_shape(shape: list[int | None]) -> dict[str, Any]:
    """Input size and layout read off a static image shape: ``[N, 3, S, S]`` or ``[N, S, S, 3]``."""
    if len(shape) != 4:
        return {}
    if shape[1] == 3 and shape[2] is not None and shape[2] == shape[3]:
        return {"layout": "NCHW", "input_size": shape[2]}
    if shape[3] == 3 and shape[1] is not None and shape[1] == shape[2]:
        return {"layout": "NHWC", "input_size": shape[1]}
    if shape[1] == 3:
        return {"layout": "NCHW"}
    if shape[3] == 3:
        return {"layout": "NHWC"}
    return {}


def model_metadata(path: str | os.PathLike[str], description: ModelDescription | None = None) -> ArtifactMetadata:
    """The model's metadata: what the file carries, completed by ``description`` (module docstring).

    A :class:`ConfigError` when a flag contradicts the file's metadata or the description leaves
    the input size unknown; a :class:`ModelError` when the model has more than one image input.
    """
    path = Path(path)
    description = description or ModelDescription()
    carried = file_metadata(path)
    given = description.given()
    current = _complete(carried, path)
    if current is not None:  # the file describes itself: the flags may only repeat it
        for key, value in given.items():
            if getattr(current, key) != value and not _close(getattr(current, key), value):
                raise ConfigError(f"--{_flag(key)} {_show(value)} contradicts the model's own metadata "
                                  f"({PREFIX}{key} = {_show(getattr(current, key))}); drop the flag")
        return current
    shape, image_inputs = input_shape(path) if path.suffix.lower() in (".onnx", ".tflite") else ([], 1)
    if image_inputs != 1:
        raise ModelError(f"{path}: {image_inputs} inputs; a landmark model takes one image")
    read_off = _from_shape(shape)
    values = {**read_off, **given}
    if "input_size" in read_off and "input_size" in given and read_off["input_size"] != given["input_size"]:
        raise ConfigError(f"--input-size {given['input_size']} contradicts the model's input shape {shape}")
    if "input_size" not in values:
        raise ConfigError(f"{path}: no metadata and a dynamic input size ({shape}); give --input-size")
    try:
        return ArtifactMetadata(**values, source=f"described:{path.name}")
    except ModelError as err:
        raise ConfigError(str(err)) from None


def check_reads_points(path: str | os.PathLike[str], metadata: ArtifactMetadata, num_threads: int | None = 1) -> None:
    """Run the model on one crop as ``metadata`` describes it: an output that cannot hold the points
    (fewer than 2N values, a slice outside it, a missing output name) is a :class:`ModelError` here,
    before any work."""
    import numpy as np

    from landmarks.runtimes import load_predictor

    crop = np.random.default_rng(0).integers(0, 256, (1, metadata.input_size, metadata.input_size, 3), np.uint8)
    load_predictor(path, num_threads=num_threads, metadata=metadata).predict(crop)


def _complete(carried: dict[str, str], path: Path) -> ArtifactMetadata | None:
    """The file's own metadata when it has every required key (a partial set is ignored: the flags and
    the input shape describe the model then)."""
    if not carried:
        return None
    try:
        return ArtifactMetadata.from_strings(carried, where=str(path))
    except ModelError:
        return None


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(_close(x, y) for x, y in zip(a, b, strict=True))
    return isinstance(a, float | int) and isinstance(b, float | int) and abs(a - b) <= 1e-6 * max(1.0, abs(a))


def _flag(key: str) -> str:
    return {"output_name": "output", "output": "points-unit"}.get(key, key.replace("_", "-"))


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)
