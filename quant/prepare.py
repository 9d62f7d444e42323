"""Make any landmark ONNX ready for INT8: the passes a model exported elsewhere may need.

Models exported by older toolchains (opset 9 or 10, IR version 4, initializers listed as graph
inputs, dynamic input sizes, heads with extra outputs) trip onnxruntime's quantizer, which then
writes a candidate that does not load. :func:`prepare_onnx` checks the user's model first (a
problem there is the user's: :class:`~landmarks.errors.ModelError`, exit 2), then runs each pass
that the model needs, each inside :func:`landmarks.errors.step`, so a failure is reported as the
tool's and names the pass (exit 3):

1. initializers out of the graph inputs (``keep_initializers_as_inputs`` exports);
2. opset upgraded to :data:`MIN_OPSET` (``onnx.version_converter``; per-channel QDQ needs 13);
3. the image input's size fixed to the described ``input_size`` (the batch stays dynamic);
4. only the output that holds the points kept;
5. shapes inferred and the graph simplified (onnxsim);
6. the result checked: ``onnx.checker``, an onnxruntime session, and the same outputs as the
   user's model on one input (so no pass changed what the model computes).

Every candidate ``quant.ptq`` builds from it is checked the same way (:func:`check_candidate`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.errors import ModelError, step
from landmarks.metadata import ArtifactMetadata

MIN_OPSET = 13
PARITY_TOLERANCE = 1e-4  # max |difference| / max(1, |output|) between the user's model and the prepared one


def load_user_model(path: str | os.PathLike[str]) -> Any:
    """Load and check the user's ONNX; anything wrong with it is a :class:`ModelError` (exit 2)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf's DecodeError and onnx's own: the file is not ONNX
        raise ModelError(f"{path}: not an ONNX model ({_first_line(err)})") from err
    if not model.graph.node:
        raise ModelError(f"{path}: not an ONNX model (no graph nodes)")
    opset = default_opset(model)
    known = onnx.defs.onnx_opset_version()
    if opset > known:
        raise ModelError(f"{path}: opset {opset} is newer than this onnx ({onnx.__version__}) knows ({known}); "
                         "export it with an older opset")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise ModelError(f"{path}: invalid ONNX graph ({_first_line(err)})") from err
    weights = {t.name for t in model.graph.initializer}
    images = [i.name for i in model.graph.input if i.name not in weights]
    if len(images) != 1:
        raise ModelError(f"{path}: {len(images)} inputs ({', '.join(images)}); a landmark model takes one image")
    _session(path, where=str(path), user=True)
    return model


def default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def prepare_onnx(path: str | os.PathLike[str], out: str | os.PathLike[str], metadata: ArtifactMetadata,
                 log: Callable[[str], None] = print) -> Path:
    """The passes of the module docstring; writes ``out`` (a copy of the model when none is needed)."""
    import onnx

    path, out = Path(path), Path(out)
    model = load_user_model(path)
    changed = []
    with step("preparing the model: initializers out of the graph inputs", own_files=True):
        if _initializers_out_of_inputs(model):
            changed.append("initializers moved out of the graph inputs")
    opset = default_opset(model)
    if opset < MIN_OPSET:
        with step(f"preparing the model: opset {opset} -> {MIN_OPSET} (onnx.version_converter)", own_files=True):
            model = _upgrade(model, MIN_OPSET)
            changed.append(f"opset {opset} -> {MIN_OPSET}")
    with step("preparing the model: fixing the input size", own_files=True):
        if _fix_input_size(model, metadata):
            changed.append(f"input size fixed to {metadata.input_size}")
    with step("preparing the model: keeping the points output", own_files=True):
        dropped = _keep_points_output(model, metadata)
        if dropped:
            changed.append(f"outputs {', '.join(dropped)} dropped")
    if changed:
        with step("preparing the model: shape inference and simplification (onnxsim)", own_files=True):
            model = _simplify(model, log)
    with step("preparing the model: writing it", own_files=True):
        onnx.save(model, str(out))
    with step("preparing the model: checking it (onnx.checker, onnxruntime, outputs)", own_files=True):
        check_candidate(out)
        _same_outputs(path, out, metadata)
    if changed:
        log(f"prepared {path.name} for INT8: {'; '.join(changed)}")
    return out


def nchw_input(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """An NHWC-input model with a Transpose in front, so its input is NCHW: onnx2tf reads a 4-D
    input as NCHW and makes it NHWC, so the TFLite model of an NHWC ONNX is built from this one."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    image = model.graph.input[0]
    dims = image.type.tensor_type.shape.dim
    nhwc_name = f"{image.name}_nhwc"
    for node in model.graph.node:
        node.input[:] = [nhwc_name if name == image.name else name for name in node.input]
    transpose = helper.make_node("Transpose", [image.name], [nhwc_name], perm=[0, 2, 3, 1], name="nchw_to_nhwc")
    model.graph.node.insert(0, transpose)
    batch, height, width, channels = (d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims)
    for dim, value in zip(dims, (batch, channels, height, width), strict=True):
        dim.Clear()
        if isinstance(value, int) and value > 0:
            dim.dim_value = value
        else:
            dim.dim_param = str(value or "N")
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return Path(out)


def check_candidate(path: str | os.PathLike[str]) -> None:
    """A model the tool wrote must pass ``onnx.checker`` and load in onnxruntime (else it is the tool's
    error: callers run this inside :func:`landmarks.errors.step` with ``own_files=True``)."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as err:
        raise ModelError(f"{Path(path).name}: invalid ONNX graph ({_first_line(err)})") from err
    _session(Path(path), where=Path(path).name, user=False)


def _session(path: Path, where: str, user: bool) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's pybind errors share no base class but Exception
        reason = _first_line(err)
        if user and "opset" in reason.lower():
            raise ModelError(f"{where}: onnxruntime cannot run this opset ({reason}); export with an older opset") \
                from err
        raise ModelError(f"{where}: not a loadable ONNX model ({reason})") from err


def _initializers_out_of_inputs(model: Any) -> bool:
    weights = {t.name for t in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in weights]
    if len(kept) == len(model.graph.input):
        return False
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return True


def _upgrade(model: Any, opset: int) -> Any:
    import onnx
    from onnx import version_converter

    model.ir_version = max(model.ir_version, 7)
    converted = version_converter.convert_version(model, opset)
    onnx.checker.check_model(converted)
    return converted


def _fix_input_size(model: Any, metadata: ArtifactMetadata) -> bool:
    """Dynamic height/width of the image input become ``input_size``; a static one must match."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ModelError(f"the image input has {len(dims)} dimensions; expected 4 (a batch of images)")
    size, channels = metadata.input_size, (1, 2, 3) if metadata.layout == "NCHW" else (3, 1, 2)
    wanted = {channels[0]: 3, channels[1]: size, channels[2]: size}
    changed = False
    for axis, value in wanted.items():
        dim = dims[axis]
        if dim.HasField("dim_value") and dim.dim_value > 0:
            if dim.dim_value != value:
                raise ModelError(f"the image input has {dim.dim_value} at axis {axis}, the description says {value} "
                                 f"(layout {metadata.layout}, input size {size})")
            continue
        dim.Clear()
        dim.dim_value = value
        changed = True
    return changed


def _keep_points_output(model: Any, metadata: ArtifactMetadata) -> list[str]:
    """Only the output that holds the points stays (the others' nodes go in simplification)."""
    names = [o.name for o in model.graph.output]
    keep = metadata.output_name or names[0]
    if keep not in names:
        raise ModelError(f"no output named {keep!r} (outputs: {', '.join(names)})")
    if len(names) == 1:
        return []
    kept = [o for o in model.graph.output if o.name == keep]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return [n for n in names if n != keep]


def _simplify(model: Any, log: Callable[[str], None]) -> Any:
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
    except Exception as err:  # onnxsim gives up on some graphs; the unsimplified one is still valid
        log(f"onnxsim could not simplify the model ({_first_line(err)}); continuing without")
        return model
    return simplified if ok else model


def _same_outputs(original: Path, prepared: Path, metadata: ArtifactMetadata) -> None:
    """The prepared model's points output equals the user's on one preprocessed input."""
    from landmarks.runtimes.base import preprocess

    crop = np.random.default_rng(0).integers(0, 256, (1, metadata.input_size, metadata.input_size, 3), np.uint8)
    feed = preprocess(crop, metadata)
    theirs = _session(original, original.name, user=True)
    ours = _session(prepared, prepared.name, user=False)
    name = metadata.output_name or theirs.get_outputs()[0].name
    expected = theirs.run([name], {theirs.get_inputs()[0].name: feed})[0]
    got = ours.run([ours.get_outputs()[0].name], {ours.get_inputs()[0].name: feed})[0]
    if expected.size != got.size:
        raise ModelError(f"the prepared model outputs {got.size} values, the original {expected.size}")
    scale = max(1.0, float(np.abs(expected).max()))
    worst = float(np.abs(expected.reshape(-1) - got.reshape(-1)).max()) / scale
    if worst > PARITY_TOLERANCE:
        raise ModelError(f"the prepared model's output differs from the original's by {worst:.2e} (relative)")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
