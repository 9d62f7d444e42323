"""ONNX -> TensorFlow SavedModel (onnx2tf) -> ``.tflite`` (TFLiteConverter), plus the sidecar JSON.

Why onnx2tf: it is maintained, installed here, and turns the NCHW ONNX graph into a native
NHWC TensorFlow graph (no transposes around every conv). litert-torch, the other maintained
path, pulls in jax and transformers. onnx2tf is used only for the graph translation
(``disable_model_save``); the SavedModel and the TFLite conversion are done here, so that

* FP32 conversion never reaches onnx2tf's quantization code, which downloads a calibration
  sample from the internet, and never writes the FP16/dynamic-range files it makes by default;
* the INT8 stage can reuse :func:`onnx_to_saved_model` and pass its own calibration data and
  converter settings to :func:`saved_model_to_tflite`.

TensorFlow and onnx2tf take seconds to import, so they are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.errors import ModelError, UnsupportedBackendError

SIGNATURE_KEY = "serving_default"
_CONVERTER_MODULES = ("onnx2tf", "tensorflow", "tf_keras", "onnx_graphsurgeon", "sng4onnx")

RepresentativeDataset = Callable[[], Iterable[list[np.ndarray]]]
ConverterHook = Callable[[Any], None]


def is_installed(module: str) -> bool:
    """Importable without importing it (a ``None`` entry in ``sys.modules`` blocks a module)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def check_converter_installed() -> None:
    """Fail before any work when the TFLite converter stack is incomplete."""
    missing = [m for m in _CONVERTER_MODULES if not is_installed(m)]
    if missing:
        raise UnsupportedBackendError(
            f"TFLite export needs {', '.join(missing)}: pip install 'edge-landmarks[tflite]'"
        )


def onnx_to_saved_model(onnx_path: str | os.PathLike[str], workdir: str | os.PathLike[str]) -> Path:
    """Translate an ONNX model to a SavedModel under ``workdir``; returns its folder.

    The SavedModel has one ``serving_default`` signature whose input keeps the ONNX input name
    (now NHWC, batch dynamic) and whose outputs are named after the ONNX outputs.
    """
    check_converter_installed()
    _quiet_tensorflow_import()
    import onnx
    import onnx2tf
    import tensorflow as tf
    import tf_keras

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # onnx2tf rewrites the file it is given (op renaming); it must never touch the artifact.
    private_copy = workdir / "input.onnx"
    shutil.copyfile(onnx_path, private_copy)
    onnx_path = private_copy
    output_names = [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]
    with _quiet():
        keras_model = onnx2tf.convert(
            input_onnx_file_path=str(onnx_path),
            output_folder_path=str(workdir / "onnx2tf"),
            disable_model_save=True,
            not_use_onnxsim=True,
            non_verbose=True,
            verbosity="error",
        )
    if keras_model is None:
        raise ModelError(f"{onnx_path}: onnx2tf could not translate the graph")
    signature = [tf.TensorSpec(t.shape, t.dtype, t.name) for t in keras_model.inputs]

    def serve(*inputs: Any) -> dict[str, Any]:
        outputs = keras_model(inputs)
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        return dict(zip(output_names, outputs, strict=True))

    out = workdir / "saved_model"
    archive = tf_keras.export.ExportArchive()
    archive.track(keras_model)
    archive.add_endpoint(name=SIGNATURE_KEY, fn=serve, input_signature=signature)
    with _quiet():
        archive.write_out(str(out))
    return out


def saved_model_to_tflite(
    saved_model_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    int8_calibration: RepresentativeDataset | None = None,
    configure: ConverterHook | None = None,
) -> Path:
    """Convert a SavedModel to ``out_path`` (a staging path; not atomic).

    FP32 by default, builtin ops only, so plain LiteRT runs it. ``int8_calibration`` (a TFLite
    ``representative_dataset``: a callable yielding ``[input_array]`` lists) turns on
    post-training quantization; ``configure(converter)`` may then set anything else on the
    ``tf.lite.TFLiteConverter`` (supported ops, I/O types, op denylists) before conversion.
    """
    check_converter_installed()
    _quiet_tensorflow_import()
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), [SIGNATURE_KEY])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if int8_calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = int8_calibration
    if configure is not None:
        configure(converter)
    with _quiet():  # a converter failure is the tool's (exit 3 with its traceback), not the user's input
        flatbuffer = converter.convert()
    out_path = Path(out_path)
    out_path.write_bytes(flatbuffer)
    return out_path


def _quiet_tensorflow_import() -> None:
    """Keep TensorFlow's import-time log lines off stderr unless the user asked for them.

    TensorFlow only translates and converts graphs here, so turning its oneDNN kernels off
    (the source of an unconditional start-up line) costs nothing.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@contextlib.contextmanager
def _quiet():
    """Swallow the converters' Python-level chatter on stdout (their C++ logs obey TF_CPP_MIN_LOG_LEVEL)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
