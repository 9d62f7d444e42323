"""Export stage: torch checkpoint -> ONNX / TFLite FP32 artifacts, each checked for parity.

Usage::

    from export import ExportConfig, export_checkpoint

    artifacts = export_checkpoint("student.pt", "out/", ExportConfig(formats=("onnx", "tflite")))
    for a in artifacts:
        print(a.path, a.parity.max_abs_diff, a.parity.nme_io_diff)

``onnx_to_saved_model`` and ``saved_model_to_tflite`` are public so the INT8 stage can reuse the
TFLite path with its own calibration data. Heavy converters import lazily.
"""

from export.config import ExportConfig
from export.onnx_export import export_onnx
from export.pipeline import export_checkpoint, export_model
from export.report import ExportedArtifact, ParityError, ParityResult
from export.tflite_export import onnx_to_saved_model, saved_model_to_tflite
from landmarks.artifact import write_sidecar

__all__ = [
    "ExportConfig",
    "ExportedArtifact",
    "ParityError",
    "ParityResult",
    "export_checkpoint",
    "export_model",
    "export_onnx",
    "onnx_to_saved_model",
    "saved_model_to_tflite",
    "write_sidecar",
]
