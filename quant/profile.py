"""Where a model's batch-1 time goes, per kind of layer, in onnxruntime: ``python -m quant.profile MODEL``.

onnxruntime's profiler records each kernel of the optimized graph (after its fusions: an INT8
QDQ convolution runs as one ``QLinearConv``), with the shapes of its inputs. Each kernel is put in
one kind of layer by what it computes, the same for FP32 and INT8 graphs, so the two can be
compared side by side:

=================  ==============================================================
first conv         a convolution of the 3-channel image
depthwise conv     one filter per channel (``group`` = channels)
pointwise expand   1x1 convolution to more channels
pointwise project  1x1 convolution to fewer (or as many) channels
conv               any other convolution
add                residual additions
fully connected    Gemm / MatMul
pooling            average / max pooling
conversion         QuantizeLinear / DequantizeLinear / Cast / Transpose / layout changes
other              the rest (reshape, concat, activations left unfused)
=================  ==============================================================

A runtime or model the profiler cannot handle gives a profile that says "not measured" and why;
quantization and the gate go on without it. The timing file the command writes (JSON) can be
made on the target device and passed to ``quant.ptq --timings`` (the speed policy).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("first conv", "depthwise conv", "pointwise expand", "pointwise project", "conv", "add",
         "fully connected", "pooling", "conversion", "other")
CONVS = {"Conv", "QLinearConv", "FusedConv", "NhwcFusedConv", "ConvInteger"}
CONVERSIONS = {"QuantizeLinear", "DequantizeLinear", "Cast", "Transpose", "ReorderInput", "ReorderOutput",
               "DynamicQuantizeLinear"}


@dataclass(frozen=True)
class LayerProfile:
    """Microseconds per run of each kind of layer (and of each kernel); ``reason`` when not measured."""

    model: str
    runtime: str
    threads: int
    runs: int
    kinds: dict[str, float] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # kernel name -> kind, op, microseconds
    reason: str = ""

    @property
    def measured(self) -> bool:
        return not self.reason

    @property
    def total_us(self) -> float:
        return float(sum(self.kinds.values()))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "runtime": self.runtime, "threads": self.threads, "runs": self.runs,
                "kinds": self.kinds, "nodes": self.nodes, "reason": self.reason}


def conv_kind(weight: Sequence[int], group: int) -> str:
    """The kind of a convolution from its weight shape ``[K, C / group, kh, kw]`` and ``group``."""
    out_channels, per_group, kh, kw = weight
    in_channels = per_group * group
    if in_channels == 3:
        return "first conv"
    if group > 1 and group == in_channels:
        return "depthwise conv"
    if kh == 1 and kw == 1:
        return "pointwise expand" if out_channels > in_channels else "pointwise project"
    return "conv"


def static_kinds(path: str | os.PathLike[str]) -> dict[str, str]:
    """Each convolution node of an ONNX file (FP32, or QDQ: its weight behind a DequantizeLinear) -> kind."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    dequantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    kinds = {}
    for node in model.graph.node:
        if node.op_type not in CONVS or len(node.input) < 2:
            continue
        weight = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
        shape = shapes.get(weight) or shapes.get(dequantized.get(weight, ""))
        if shape and len(shape) == 4:
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            kinds[node.name] = conv_kind(shape, group)
    return kinds


def kind_of(op: str, input_shapes: Sequence[Sequence[int]], output_shapes: Sequence[Sequence[int]],
            name: str = "", known: dict[str, str] | None = None) -> str:
    """The kind of one kernel: a convolution by the node of the model file it came from (its name is
    a prefix of the kernel's), else by the shapes onnxruntime recorded; other ops by their type."""
    if op in CONVS and known:
        source = max((n for n in known if n and name.startswith(n)), key=len, default=None)
        if source is not None:
            return known[source]
    if op in CONVS:
        weight = input_shapes[3] if op == "QLinearConv" and len(input_shapes) > 3 else (
            input_shapes[1] if len(input_shapes) > 1 else [])
        x = input_shapes[0] if input_shapes else []
        channels = x[1] if len(x) == 4 else None
        if channels == 3:
            return "first conv"
        if len(weight) == 4:
            out_channels, per_group, kh, kw = weight
            if per_group == 1 and channels is not None and channels > 1 and out_channels >= channels:
                return "depthwise conv"
            if kh == 1 and kw == 1:
                return "pointwise expand" if channels is not None and out_channels > channels else "pointwise project"
        return "conv"
    if op in ("Add", "QLinearAdd", "Sum"):
        return "add"
    if op in ("Gemm", "MatMul", "QLinearMatMul", "MatMulInteger", "FusedGemm", "FusedMatMul"):
        return "fully connected"
    if "Pool" in op:
        return "pooling"
    if op in CONVERSIONS:
        return "conversion"
    return "other"


def profile_onnx(path: str | os.PathLike[str], *, threads: int = 1, runs: int = 200, warmup: int = 20,
                 input_size: int | None = None) -> LayerProfile:
    """Profile ``runs`` batch-1 runs of an ONNX model in onnxruntime (after ``warmup`` unprofiled ones)."""
    path = Path(path)
    try:
        import onnxruntime as ort
    except ImportError as err:
        return LayerProfile(str(path), "onnxruntime", threads, 0, reason=f"onnxruntime is not installed ({err})")
    try:
        with tempfile.TemporaryDirectory(prefix="quant.profile.") as tmp:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 3
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / "profile")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            model_input = session.get_inputs()[0]
            shape = [1, *[d if isinstance(d, int) and d > 0 else input_size or 1 for d in model_input.shape[1:]]]
            feed = {model_input.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
            for _ in range(warmup):
                session.run(None, feed)
            session.end_profiling()
            options.profile_file_prefix = str(Path(tmp) / "measured")
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for _ in range(runs):
                session.run(None, feed)
            events = json.loads(Path(session.end_profiling()).read_text())
    except Exception as err:  # a model or runtime the profiler cannot handle: "not measured", with the reason
        return LayerProfile(str(path), "onnxruntime", threads, 0, reason=f"{type(err).__name__}: {err}"[:300])
    return _summarize(str(path), threads, runs, events, static_kinds(path))


def _summarize(model: str, threads: int, runs: int, events: list[dict[str, Any]],
               known: dict[str, str]) -> LayerProfile:
    kinds: dict[str, float] = defaultdict(float)
    nodes: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        op = str(args.get("op_name", ""))
        shapes = [_shape(s) for s in args.get("input_type_shape", [])]
        outputs = [_shape(s) for s in args.get("output_type_shape", [])]
        name = str(event["name"]).removesuffix("_kernel_time")
        kind = kind_of(op, shapes, outputs, name, known)
        micros = float(event.get("dur", 0)) / runs
        kinds[kind] += micros
        node = nodes.setdefault(name, {"op": op, "kind": kind, "us": 0.0})
        node["us"] += micros
    if not nodes:
        return LayerProfile(model, "onnxruntime", threads, runs, reason="the profile recorded no kernel")
    return LayerProfile(model, "onnxruntime", threads, runs,
                        kinds={k: round(kinds[k], 2) for k in KINDS if k in kinds},
                        nodes={k: {**v, "us": round(v["us"], 2)} for k, v in nodes.items()})


def _shape(entry: Any) -> list[int]:
    """``{"float": [1, 3, 112, 112]}`` -> ``[1, 3, 112, 112]``."""
    if isinstance(entry, dict) and entry:
        return [int(d) for d in next(iter(entry.values()))]
    return []


def kind_table(profiles: dict[str, LayerProfile]) -> str:
    """Markdown: one row per kind of layer, one column per profiled model (microseconds per run)."""
    names = list(profiles)
    lines = ["| layers | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    kinds = [k for k in KINDS if any(k in p.kinds for p in profiles.values())]
    for kind in kinds:
        cells = [f"{p.kinds[kind]:.0f}" if kind in p.kinds else ("-" if p.measured else "not measured")
                 for p in profiles.values()]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("| **total (us)** | " + " | ".join(
        f"**{p.total_us:.0f}**" if p.measured else f"not measured: {p.reason}" for p in profiles.values()) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from landmarks.atomic import write_json
    from landmarks.cli import add_threads, check_output_file, new_parser
    from landmarks.errors import cli_errors

    p = new_parser("python -m quant.profile", __doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path, help="ONNX models (e.g. the FP32 model and its INT8 twin)")
    p.add_argument("--runs", type=int, default=200, help="profiled runs (default %(default)s)")
    p.add_argument("--input-size", type=int, default=None, help="for a model with a dynamic input size")
    p.add_argument("--out", type=Path, default=None, help="write the timings as JSON (for quant.ptq --timings)")
    add_threads(p)
    args = p.parse_args(argv)
    with cli_errors("python -m quant.profile"):
        if args.out is not None:
            check_output_file(args.out)
        profiles = {m.name: profile_onnx(m, threads=args.threads or 1, runs=args.runs, input_size=args.input_size)
                    for m in args.models}
        print(kind_table(profiles))
        if args.out is not None:
            write_json(args.out, {"threads": args.threads or 1,
                                  "profiles": {name: prof.to_dict() for name, prof in profiles.items()}})
            print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
