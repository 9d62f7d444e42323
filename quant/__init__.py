"""INT8 post-training quantization (onnxruntime QDQ, TFLite full-integer) behind an accuracy gate.

``run_ptq`` is the whole stage (``python -m quant.ptq model.onnx``); the gate lives in
:mod:`quant.accuracy_gate`. TensorFlow and onnxruntime are imported where they are used.
"""

from quant.accuracy_gate import GateConfig, GateReport, check_disjoint, place_artifact, run_gate
from quant.ort_int8 import StaticInt8Config
from quant.report import QuantReport
from quant.tflite_int8 import TfliteInt8Config

__all__ = [
    "GateConfig",
    "GateReport",
    "PtqConfig",
    "PtqResult",
    "QuantReport",
    "StaticInt8Config",
    "TfliteInt8Config",
    "check_disjoint",
    "place_artifact",
    "run_gate",
    "run_ptq",
]


def __getattr__(name: str) -> object:
    # quant.ptq is also ``python -m quant.ptq``; importing it eagerly here would make runpy warn.
    if name in ("PtqConfig", "PtqResult", "run_ptq"):
        from quant import ptq

        return getattr(ptq, name)
    raise AttributeError(f"module 'quant' has no attribute {name!r}")
