"""Models from elsewhere through ``quant.ptq``: FP32 against INT8 ONNX and TFLite, per fixture.

The fixtures are the test suite's (``tests/foreign.py``): small landmark nets exported the ways other
toolchains do (opset 9 with initializers as graph inputs and a pose tail on the output, opset 11 with
BGR (x - 127) / 127 NHWC input and pixel outputs, opset 13 with a dynamic input size), each with no
metadata and described only by flags. Each is quantized as a user would (``run_ptq`` with the
description, 1-thread latency of FP32 and INT8 measured side by side, interleaved) and evaluated on
synthetic faces written to a folder, the calibration faces apart from them.

    python benchmarks/foreign_models.py            # -> benchmarks/results/foreign_models.{json,md}
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_name, save_results  # noqa: E402
from landmarks.errors import cli_errors  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def run(eval_count: int, calib_count: int, log: Any = print) -> list[dict[str, Any]]:
    from landmarks.describe import add_description_flags as flags_of
    from landmarks.describe import description_from_args, model_metadata
    from quant.ptq import PtqConfig, run_ptq
    from tests.foreign import FIXTURES, build, write_faces

    rows = []
    with tempfile.TemporaryDirectory(prefix="foreign-models-") as tmp:
        root = Path(tmp)
        faces = write_faces(root / "faces", eval_count, seed=9_000_000)
        calib = write_faces(root / "calib", calib_count, seed=8_000_000)
        for spec in FIXTURES:
            path, _ = build(spec, root / "models")
            parser = argparse.ArgumentParser()
            flags_of(parser)
            metadata = model_metadata(path, description_from_args(parser.parse_args(spec.flags())))
            for fmt in ("onnx", "tflite"):
                config = PtqConfig(format=fmt, calib=str(calib), eval=str(faces), threads=1, latency=True)
                result = run_ptq(path, root / fmt / f"{spec.name}.int8.{fmt}", config, metadata=metadata,
                                 log=lambda line: None)
                r = result.report
                rows.append({"model": spec.name, "opset": spec.opset, "format": fmt, "verdict": r.verdict,
                             "nme_io_fp32": r.nme_fp32, "nme_io_int8": r.nme_int8, "regression": r.regression,
                             "bytes_fp32": r.bytes_fp32, "bytes_int8": r.bytes_int8,
                             "latency_fp32_ms": r.latency_fp32_ms, "latency_int8_ms": r.latency_int8_ms,
                             "float_nodes": len(r.float_nodes)})
                log(f"{spec.name} {fmt}: {r.verdict_line}")
    return rows


def table(rows: list[dict[str, Any]], cpu: str, eval_count: int) -> str:
    lines = [
        "# Models from elsewhere through quant.ptq",
        "",
        f"Fixtures of `tests/foreign.py`, described by flags only; {eval_count} synthetic eval faces in a folder. "
        f"Latency: batch 1, 1 thread, model only, median, FP32 (the user's ONNX) and INT8 timed side by side, "
        f"interleaved. CPU: {cpu}. FP32 is the user's ONNX, but for the latency of TFLite rows: there it is the "
        "FP32 TFLite converted from it, the model INT8 TFLite is gated against, timed in LiteRT beside it.",
        "",
        "| model | INT8 format | verdict | FP32 nme_io % | INT8 nme_io % | FP32 size | INT8 size | FP32 ms | INT8 ms "
        "| INT8 / FP32 time |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = r["latency_int8_ms"] / r["latency_fp32_ms"] if r["latency_fp32_ms"] else float("nan")
        lines.append(f"| {r['model']} | {r['format']} | {r['verdict']} | {r['nme_io_fp32']:.2f} | "
                     f"{r['nme_io_int8']:.2f} | {r['bytes_fp32'] / 1024:.0f} KB | {r['bytes_int8'] / 1024:.0f} KB | "
                     f"{r['latency_fp32_ms']:.3f} | {r['latency_int8_ms']:.3f} | x{ratio:.2f} |")
    lines += ["", "These nets are tiny (three convolutions and a fully connected head): what they show is that "
              "every kind of export goes through, not the speed of INT8 on a real student "
              "(benchmarks/results/int8_speed.md)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval-count", type=int, default=96)
    p.add_argument("--calib-count", type=int, default=64)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    with cli_errors("benchmarks/foreign_models.py"):
        cpu = cpu_name()
        rows = run(args.eval_count, args.calib_count)
        save_results(args.out, "foreign_models", {"cpu": cpu, "eval_count": args.eval_count, "rows": rows},
                     table(rows, cpu, args.eval_count), command="python benchmarks/foreign_models.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
