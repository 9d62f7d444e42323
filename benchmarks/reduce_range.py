"""8-bit or 7-bit ONNX weights (``quant.reduce_range``), decided on the validation split.

x86 CPUs without VNNI (AVX2 only) multiply u8 activations by s8 weights with ``vpmaddubsw``, which
adds each pair of products in a saturating 16-bit lane: 255 x 127 x 2 overflows it, so an 8-bit-weight
model can lose accuracy there and not on a VNNI or ARM CPU that runs the same file. 7-bit weights
cannot overflow the lane. For each FP32 ONNX given (the Pareto front's points), this quantizes it the
recipe's way, all-INT8 (no fallback: the raw quantization loss), with 8-bit and with 7-bit weights,
and measures on *this* CPU the validation and test ``nme_io`` and the batch-1 latency on 1 thread,
side by side in one run. The validation ``nme_io`` is also measured with onnxruntime's graph
optimizations off, which runs the QDQ graph as written (quantize, dequantize, float convolution):
the exact INT8 arithmetic, without the fused integer kernels, so the two columns tell what the
quantization loses from what this CPU's kernels add.

    LANDMARKS_DATA=/data python benchmarks/reduce_range.py --seed 1 \\
        0=runs/pareto/pareto/ratio_0/run/release/student.onnx 0.3=runs/pareto/pareto/ratio_0.3/run/release/student.onnx
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_flags, cpu_name, save_results, shown_path  # noqa: E402
from landmarks.errors import cli_errors  # noqa: E402

RECIPE = ROOT / "recipes" / "300w_pfld025.yaml"
RESULTS = ROOT / "benchmarks" / "results"
WEIGHTS = {"8-bit": False, "7-bit": True}


def run(models: dict[str, Path], seed: int, log: Any = print) -> list[dict[str, Any]]:
    """Rows per model (keyed by its label): FP32, then INT8 with 8-bit and with 7-bit weights."""
    from benchmarks.pareto import validation_set
    from landmarks.artifact import read_onnx_metadata
    from landmarks.evaluate import EvalCache, Evaluator
    from landmarks.runtimes import load_predictor
    from quant.latency import measure
    from quant.ptq import run_ptq
    from recipes.data import open_calib
    from recipes.gating import eval_set
    from recipes.schema import load_recipe

    recipe = load_recipe(RECIPE)
    rows, files = [], []
    with tempfile.TemporaryDirectory(prefix="reduce-range-") as tmp:
        for index, (label, model) in enumerate(models.items()):
            metadata = read_onnx_metadata(model)
            calib = open_calib(recipe, metadata)
            test = eval_set(recipe, metadata, EvalCache())
            val_faces = validation_set(metadata, seed)
            val = Evaluator(val_faces, name="validation")
            exact = Evaluator(val_faces, name="validation")  # its own cache: reports are keyed by the file
            fp32 = {"model": label, "weights": "FP32", "bytes": model.stat().st_size,
                    "val_nme_io": val.nme(load_predictor(model, num_threads=2)),
                    "test_nme_io": test.nme(load_predictor(model, num_threads=2))}
            rows.append(fp32)
            files.append(model)
            for weights, reduce_range in WEIGHTS.items():
                base = recipe.ptq_config("onnx")
                config = replace(base, onnx=replace(base.onnx, reduce_range=reduce_range), fallback=False,
                                 latency=False, threads=2)
                out = Path(tmp) / f"{index}_{weights}" / "student.int8.onnx"
                result = run_ptq(model, out, config, calib_dataset=calib, evaluator=test,
                                 log=lambda line: log(f"  {line}"))
                made = result.artifact  # in rejected/ when past the recipe's gate: measured all the same
                row = {"model": label, "weights": weights, "bytes": made.stat().st_size,
                       "val_nme_io": val.nme(load_predictor(made, num_threads=2)),
                       "val_nme_io_exact": exact.nme(exact_arithmetic(load_predictor(made, num_threads=2), made)),
                       "test_nme_io": result.gate.nme_candidate}
                for split in ("val", "test"):
                    row[f"{split}_regression"] = row[f"{split}_nme_io"] / fp32[f"{split}_nme_io"] - 1
                log(f"{label} {weights}: val {row['val_nme_io']:.3f} "
                    f"({100 * row['val_regression']:+.2f}%), test {row['test_nme_io']:.3f} "
                    f"({100 * row['test_regression']:+.2f}%)")
                rows.append(row)
                files.append(made)
        timings = measure(files, threads=1, rounds=20, input_size=metadata.input_size)
    for row, timing in zip(rows, timings, strict=True):
        row["latency_ms"] = round(timing.median_ms, 4)
    return rows


def exact_arithmetic(predictor: Any, path: Path) -> Any:
    """``predictor`` on a session without graph optimizations: no QDQ fusion into integer kernels."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads, options.log_severity_level = 2, 3
    predictor.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return predictor


def table(rows: list[dict[str, Any]], cpu: str, flags: str, seed: int) -> str:
    lines = [
        "# 8-bit or 7-bit INT8 ONNX weights (`quant.reduce_range`)",
        "",
        f"CPU: {cpu} ({flags}); all-INT8 (no fallback), the recipe's calibration (percentile, 256 training "
        f"faces); validation: the seed-{seed} split of the training folders; test: 300-W common. Latency: "
        "onnxruntime, batch 1, 1 thread, median, all files side by side in one run.",
        "",
        "| model | weights | KB | val nme_io | vs FP32 | val, exact arithmetic | test nme_io | vs FP32 | ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        val = f"{100 * row['val_regression']:+.2f}%" if "val_regression" in row else "-"
        test = f"{100 * row['test_regression']:+.2f}%" if "test_regression" in row else "-"
        exact = f"{row['val_nme_io_exact']:.3f}" if "val_nme_io_exact" in row else "-"
        lines.append(f"| {row['model']} | {row['weights']} | {row['bytes'] / 1024:.0f} | {row['val_nme_io']:.3f} | "
                     f"{val} | {exact} | {row['test_nme_io']:.3f} | {test} | {row['latency_ms']:.3f} |")
    return "\n".join(lines) + "\n"


def _labelled(item: str) -> tuple[str, Path]:
    label, _, path = item.rpartition("=")
    return label or shown_path(path), Path(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", metavar="[LABEL=]MODEL",
                   help="FP32 ONNX students with artifact metadata, each optionally labelled (e.g. its prune ratio)")
    p.add_argument("--seed", type=int, default=0, help="the recipe seed the students were trained with (val split)")
    p.add_argument("--name", default="reduce_range")
    args = p.parse_args(argv)
    with cli_errors("benchmarks/reduce_range.py"):
        models = dict(_labelled(item) for item in args.models)
        rows = run(models, args.seed)
        cpu, flags = cpu_name(), cpu_flags()
        command = "python benchmarks/reduce_range.py --seed {} {}".format(
            args.seed, " ".join(f"{label}={shown_path(path)}" for label, path in models.items()))
        save_results(RESULTS, args.name, {"cpu": cpu, "cpu_flags": flags, "seed": args.seed, "rows": rows},
                     table(rows, cpu, flags, args.seed), command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
