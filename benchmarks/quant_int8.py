"""INT8 benchmark: ONNX QDQ (U8S8 and S8S8) and TFLite full-integer vs FP32, gated, one process.

Usage::

    python benchmarks/quant_int8.py --checkpoint runs/pfld025.kd.pt          # distilled student
    python benchmarks/quant_int8.py --onnx student.onnx --calib synthetic --eval synthetic

Defaults: the 300-W train faces (Helen, LFPW train, AFW) for calibration and the 300-W common
test set (Helen + LFPW test) as eval when ``$LANDMARKS_DATA/300w`` exists, synthetic otherwise.
Without ``--checkpoint``/``--onnx`` a randomly initialized pfld025 is used (timing and size only
mean something then; say so when quoting). Writes ``benchmarks/results/quant_int8.{json,md}``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_name  # noqa: E402
from landmarks.atomic import write_json, write_text  # noqa: E402
from landmarks.data.specs import data_root  # noqa: E402
from landmarks.metadata import ArtifactMetadata  # noqa: E402

DATA = data_root() / "300w"
TRAIN = ("helen/trainset", "lfpw/trainset", "afw")
TEST = ("helen/testset", "lfpw/testset")


def _default(parts: tuple[str, ...]) -> str:
    return ",".join(str(DATA / p) for p in parts) if DATA.is_dir() else "synthetic"


def _fp32_onnx(args: argparse.Namespace, workdir: Path) -> tuple[Path, str]:
    if args.onnx:
        return Path(args.onnx), f"onnx {args.onnx}"
    from export.onnx_export import export_onnx
    from landmarks.models import create_model, load_checkpoint

    path = workdir / "pfld025.onnx"
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        export_onnx(ckpt.build(), ckpt.metadata, path)
        return path, f"checkpoint {args.checkpoint} ({ckpt.arch})"
    model = create_model("pfld025").eval()
    export_onnx(model, ArtifactMetadata(num_points=68, input_size=112, source="pfld025@random-init"), path)
    return path, "pfld025, RANDOM INIT (no distilled checkpoint given)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint")
    src.add_argument("--onnx")
    p.add_argument("--calib", default=_default(TRAIN))
    p.add_argument("--eval", default=_default(TEST))
    p.add_argument("--calib-count", type=int, default=256)
    p.add_argument("--eval-count", type=int, default=554, help="faces of a synthetic eval set")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "quant_int8"))
    p.add_argument("--skip-tflite", action="store_true")
    args = p.parse_args(argv)

    import onnxruntime as ort

    from quant.accuracy_gate import GateConfig
    from quant.ort_int8 import StaticInt8Config
    from quant.ptq import PtqConfig, run_ptq
    from quant.tflite_int8 import TfliteInt8Config

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench.int8.") as tmp:
        workdir = Path(tmp)
        fp32, source = _fp32_onnx(args, workdir)
        variants = [
            ("onnx QDQ U8S8 (default: auto weight scales)", "onnx", StaticInt8Config(calib_count=args.calib_count),
             0.01),
            ("onnx QDQ U8S8 per-channel weights", "onnx",
             StaticInt8Config(weight_granularity="per-channel", calib_count=args.calib_count), 0.01),
            ("onnx QDQ S8S8", "onnx", StaticInt8Config(activation_type="qint8", calib_count=args.calib_count), 0.01),
        ]
        if not args.skip_tflite:
            variants += [
                ("tflite full-int8 (float io, auto weight scales)", "tflite",
                 StaticInt8Config(calib_count=args.calib_count), 0.02),
                ("tflite full-int8 (float io, per-channel weights)", "tflite",
                 StaticInt8Config(weight_granularity="per-channel", calib_count=args.calib_count), 0.02),
            ]
        for name, fmt, onnx_cfg, max_reg in variants:
            config = PtqConfig(format=fmt, calib=args.calib, eval=args.eval, eval_count=args.eval_count,
                               gate=GateConfig(max_reg), onnx=onnx_cfg,
                               tflite=TfliteInt8Config(io_type="float", weight_granularity=onnx_cfg.weight_granularity),
                               threads=args.threads)
            out = workdir / f"variant{len(rows)}" / f"model.int8.{fmt}"
            print(f"== {name}", file=sys.stderr)
            result = run_ptq(fp32, out, config, log=lambda line: print(line, file=sys.stderr))
            r = result.report
            rows.append({
                "variant": name, "max_regression": max_reg, "verdict": r.verdict, "verdict_line": r.verdict_line,
                "bytes_fp32": r.bytes_fp32, "bytes_int8": r.bytes_int8, "size_ratio": r.size_ratio,
                "nme_fp32": r.nme_fp32, "nme_int8": r.nme_int8, "regression": r.regression,
                "latency_fp32_ms": r.latency_fp32_ms, "latency_int8_ms": r.latency_int8_ms,
                "latency_ratio": r.latency_ratio, "float_nodes": list(r.float_nodes),
                "per_channel_weights": r.settings.get("per_channel_weights"),
                "per_tensor_weights": r.settings.get("per_tensor_weights"),
                "fp32_reference": "FP32 ONNX in onnxruntime" if fmt == "onnx" else "FP32 TFLite in LiteRT",
            })
    cpu = cpu_name()
    summary = {
        "model": source, "calib": args.calib, "calib_count": args.calib_count, "eval": args.eval,
        "threads": args.threads, "cpu": cpu, "onnxruntime": ort.__version__, "python": platform.python_version(),
        "metric": "nme_io percent (inter-ocular, outer eye corners)", "results": rows,
        "command": " ".join(["python benchmarks/quant_int8.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    results = Path(args.results)
    write_json(results.with_suffix(".json"), summary)
    write_text(results.with_suffix(".md"), _markdown(summary))
    print(_markdown(summary))
    return 0


def _markdown(s: dict) -> str:
    lines = [
        "# INT8 benchmark",
        "",
        f"model: {s['model']}  ",
        f"calibration: `{s['calib']}` ({s['calib_count']} images); eval: `{s['eval']}`  ",
        f"CPU: {s['cpu']}, {s['threads']} threads, batch 1, median; onnxruntime {s['onnxruntime']}  ",
        f"command: `{s['command']}`" if s.get("command") else "",
        "",
        "| variant | size FP32 | size INT8 | INT8/FP32 size | nme FP32 | nme INT8 | regression | max | "
        "lat FP32 ms | lat INT8 ms | INT8/FP32 lat | float nodes | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s["results"]:
        lines.append(
            f"| {r['variant']} | {r['bytes_fp32'] / 1024:.0f} KB | {r['bytes_int8'] / 1024:.0f} KB | "
            f"{r['size_ratio']:.1%} | {r['nme_fp32']:.3f}% | {r['nme_int8']:.3f}% | {100 * r['regression']:+.2f}% | "
            f"{100 * r['max_regression']:.0f}% | {r['latency_fp32_ms']:.3f} | {r['latency_int8_ms']:.3f} | "
            f"x{r['latency_ratio']:.2f} | {len(r['float_nodes'])} | {r['verdict']} |"
        )
    lines += ["", "FP32 reference per row: ONNX rows vs FP32 ONNX (onnxruntime), TFLite rows vs FP32 TFLite (LiteRT).",
              "S8S8 (int8 activations) is slower than FP32 here: onnxruntime's CPU provider leaves the depthwise "
              "convs and residual adds as DequantizeLinear -> float op -> QuantizeLinear and adds layout "
              "Transposes, while U8S8 fuses every conv and add into QLinearConv/QLinearAdd (`quant/ort_int8.py`).", ""]
    for r in s["results"]:
        if r.get("per_channel_weights") is not None:
            chosen = r["per_channel_weights"]
            if isinstance(chosen, str):  # TFLite: one switch for the whole model
                layers = chosen
            elif not r.get("per_tensor_weights"):
                layers = f"all {len(chosen)} layers"
            else:
                layers = ", ".join(f"`{name}`" for name in chosen) or "none"
            lines.append(f"Per-channel weight scales in '{r['variant']}': {layers}.")
    lines += ["", "Weight scales (`quant.granularity`): `auto` keeps one scale per layer unless its worst output "
              "channel would fall under 30 dB SQNR (TFLite: one scale per tensor, the converter has one switch; "
              "per-channel if the gate rejects); the ONNX file is also slimmed (`quant.onnx_slim`: all-zero "
              "zero points dropped, internal tensor names shortened), which changes no output."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
