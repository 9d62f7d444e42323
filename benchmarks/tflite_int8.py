"""Why TFLite's full-integer model lost more than onnxruntime's on the shipped student, and what fixes it.

Takes an FP32 ONNX student (default: the shipped ``landmarks/zoo/student.onnx``, the pruned and
quantization-aware 300-W student) and makes all-INT8 TFLite models from one calibration, varying
one thing at a time: the activation ranges (the converter's min/max, or percentiles of each
tensor's values, as the ONNX path's ``percentile`` calibration) and the weight scales (per tensor,
per channel). Each is evaluated in LiteRT on the validation split of the 300-W training folders
(where the choice is made) and on 300-W common (reported), against the FP32 TFLite of the same
SavedModel; the INT8 ONNX made the recipe's way is the comparison.

    LANDMARKS_DATA=/data python benchmarks/tflite_int8.py   # -> benchmarks/results/tflite_int8.{json,md}
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

from benchmarks.common import cpu_name, save_results, shown_path  # noqa: E402
from landmarks.errors import cli_errors  # noqa: E402

RECIPE = ROOT / "recipes" / "300w_pfld025.yaml"
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = (  # name, ranges (None: the converter's min/max), weight scales, min SQNR of one scale (auto)
    ("minmax, per-tensor weights", None, "per-tensor", 30.0),
    ("minmax, per-channel weights", None, "per-channel", 30.0),
    ("percentile 99.999, per-tensor weights", 99.999, "per-tensor", 30.0),
    ("percentile 99.999, per-channel weights", 99.999, "per-channel", 30.0),
    ("percentile 99.99, per-channel weights", 99.99, "per-channel", 30.0),
    ("percentile 99.9, per-channel weights", 99.9, "per-channel", 30.0),
    ("percentile 99.999, auto weights (one scale from 30 dB)", 99.999, "auto", 30.0),
    ("percentile 99.999, auto weights (one scale from 25 dB)", 99.999, "auto", 25.0),
    ("percentile 99.999, auto weights (one scale from 20 dB)", 99.999, "auto", 20.0),
)


def run(model: Path, seed: int, log: Any = print) -> dict[str, Any]:
    from landmarks.artifact import read_onnx_metadata, write_sidecar
    from landmarks.data import open_dataset
    from landmarks.data.split import Holdout
    from landmarks.evaluate import Evaluator
    from landmarks.runtimes import load_predictor
    from quant import tflite_int8
    from quant.calibration import CalibrationReader, representative_dataset
    from quant.ptq import run_ptq
    from quant.tflite_int8 import TfliteInt8Config
    from recipes.schema import load_recipe

    recipe = load_recipe(RECIPE, [f"seed={seed}"])
    metadata = read_onnx_metadata(model)
    crops = {"input_size": metadata.input_size, "crop_scale": metadata.crop_scale, "augment": None}
    val = open_dataset(recipe.data.spec("train"), seed=seed, holdout=Holdout(recipe.data.val_split, "val", seed),
                       **crops)
    test = open_dataset(recipe.data.spec("eval"), **crops)
    calib = open_dataset(recipe.data.spec("calib"), seed=seed, **crops)
    evaluators = {"val": Evaluator(val, name="validation"), "test": Evaluator(test, name="300-W common")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="tflite-int8-") as tmp:
        work = Path(tmp)
        reader = CalibrationReader(calib, metadata.replace(layout="NHWC"), "input", limit=recipe.quant.calib_count)
        saved_model = tflite_int8.to_saved_model(model, work)
        fp32 = tflite_int8.convert_float(saved_model, work / "fp32.tflite")
        write_sidecar(fp32, metadata)
        reference = {k: e.nme(load_predictor(fp32, num_threads=2)) for k, e in evaluators.items()}
        rows.append({"variant": "FP32 TFLite (reference)", "bytes": fp32.stat().st_size, **_nmes(reference)})
        calibrated = tflite_int8.calibrate(saved_model, representative_dataset(reader), work)
        for name, percentile, granularity, min_db in VARIANTS:
            ranged = calibrated if percentile is None else tflite_int8.percentile_ranges(
                calibrated, representative_dataset(reader), percentile)
            config = TfliteInt8Config(weight_granularity=granularity, min_weight_sqnr_db=min_db)
            out = tflite_int8.convert(ranged, work / f"{len(rows)}.tflite", config)
            write_sidecar(out, metadata)
            nmes = {k: e.nme(load_predictor(out, num_threads=2)) for k, e in evaluators.items()}
            rows.append({"variant": name, "bytes": out.stat().st_size, **_nmes(nmes, reference)})
            log(f"{name}: val {nmes['val']:.3f} %, test {nmes['test']:.3f} %")
        onnx = run_ptq(model, work / "onnx" / "student.int8.onnx", recipe.ptq_config("onnx"), calib_dataset=calib,
                       evaluator=evaluators["test"], log=lambda line: None)
        onnx_nmes = {"val": evaluators["val"].nme(load_predictor(onnx.artifact, num_threads=2)),
                     "test": onnx.gate.nme_candidate}
        onnx_ref = {"val": evaluators["val"].nme(load_predictor(model, num_threads=2)), "test": onnx.gate.nme_reference}
        rows.append({"variant": f"INT8 ONNX, the recipe's ({recipe.quant.method}, onnxruntime)",
                     "bytes": onnx.artifact.stat().st_size, "float_nodes": len(onnx.gate.float_nodes),
                     **_nmes(onnx_nmes, onnx_ref)})
    return {"model": shown_path(model), "seed": seed, "calib_count": recipe.quant.calib_count, "rows": rows}


def _nmes(nmes: dict[str, float], reference: dict[str, float] | None = None) -> dict[str, Any]:
    out = {"val_nme_io": nmes["val"], "test_nme_io": nmes["test"]}
    if reference is not None:
        out |= {f"{k}_regression": (nmes[k] - reference[k]) / reference[k] for k in ("val", "test")}
    return out


def table(result: dict[str, Any], cpu: str) -> str:
    lines = [
        "# TFLite full-integer INT8 of the shipped student: where its loss came from",
        "",
        f"Model `{result['model']}`; calibration: {result['calib_count']} training faces; every row all-INT8 "
        "(no op kept in float). Validation: 10 % of the training folders' photos (the choice is made there); test: "
        f"300-W common. Regression against the FP32 TFLite of the same SavedModel (the ONNX row: against the FP32 "
        f"ONNX). CPU: {cpu}.",
        "",
        "| variant | size | val nme_io % | val regression | test nme_io % | test regression |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        reg = {k: f"{100 * r[f'{k}_regression']:+.2f} %" if f"{k}_regression" in r else "-" for k in ("val", "test")}
        lines.append(f"| {r['variant']} | {r['bytes'] / 1024:.0f} KB | {r['val_nme_io']:.3f} | {reg['val']} | "
                     f"{r['test_nme_io']:.3f} | {reg['test']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "landmarks" / "zoo" / "student.onnx")
    p.add_argument("--seed", type=int, default=0, help="the recipe seed the model was trained with (its split)")
    p.add_argument("--name", default="tflite_int8")
    args = p.parse_args(argv)
    with cli_errors("benchmarks/tflite_int8.py"):
        cpu = cpu_name()
        result = run(args.model, args.seed)
        save_results(RESULTS, args.name, {"cpu": cpu, **result}, table(result, cpu),
                     command="python benchmarks/tflite_int8.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
