"""Is INT8 faster than FP32 here, where does the time go, and what does the speed policy change?

Takes an FP32 ONNX student (default: the shipped ``landmarks/zoo/student.onnx``) and quantizes it
the recipe's way (``recipes/300w_pfld025.yaml``: calibration on training faces, the gate on 300-W
common) to INT8 ONNX and INT8 TFLite, once with each precision policy (``size``: every layer INT8;
``speed``: kinds of layers measured slower in INT8 stay float). Then, side by side in one process,
1 thread, batch 1: the latency of every file (interleaved rounds), and onnxruntime's time per kind
of layer for the FP32 model and each INT8 ONNX. The TFLite rows per kind come from the speed
policy's own measurements (the model with one kind of layer in float against all INT8), since
LiteRT's Python interpreter has no per-op profiler.

    LANDMARKS_DATA=/data python benchmarks/int8_speed.py    # -> benchmarks/results/int8_speed.{json,md}
"""

from __future__ import annotations

import argparse
import json
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


def run(model: Path, log: Any = print) -> dict[str, Any]:
    from landmarks.artifact import read_onnx_metadata
    from landmarks.evaluate import EvalCache
    from quant.latency import measure
    from quant.profile import profile_onnx
    from quant.ptq import run_ptq
    from recipes.data import open_calib
    from recipes.gating import eval_set
    from recipes.schema import load_recipe

    recipe = load_recipe(RECIPE)
    metadata = read_onnx_metadata(model)
    calib = open_calib(recipe, metadata)
    files, results = {"FP32 ONNX": model}, {}
    zoo = ROOT / "landmarks" / "zoo"
    shipped = {f"shipped {name}": zoo / name for name in ("student.int8.onnx", "student.int8.tflite")
               if model.resolve() == (zoo / "student.onnx").resolve() and (zoo / name).is_file()}
    evaluator = eval_set(recipe, metadata, EvalCache())
    with tempfile.TemporaryDirectory(prefix="int8-speed-") as tmp:
        for fmt in ("onnx", "tflite"):
            for policy in ("size", "speed"):
                config = replace(recipe.ptq_config(fmt), precision_policy=policy, threads=2)
                out = Path(tmp) / f"{fmt}_{policy}" / f"student.int8.{fmt}"
                result = run_ptq(model, out, config, calib_dataset=calib, evaluator=evaluator,
                                 log=lambda line: log(f"  {line}"))
                name = f"INT8 {'ONNX' if fmt == 'onnx' else 'TFLite'}, {policy} policy"
                files[name] = result.artifact
                results[name] = {"verdict": result.gate.verdict, "nme_io": result.gate.nme_candidate,
                                 "nme_reference": result.gate.nme_reference, "regression": result.gate.regression,
                                 "bytes": result.artifact.stat().st_size, "float_nodes": len(result.gate.float_nodes),
                                 "speed": result.report.settings.get("speed")}
                log(f"{name}: {result.gate.verdict_line()}")
        timed = {**files, **shipped}
        timings = measure(list(timed.values()), threads=1, rounds=20, input_size=metadata.input_size)
        latency = {name: round(t.median_ms, 4) for name, t in zip(timed, timings, strict=True)}
        profiles = {name: profile_onnx(path, threads=1, input_size=metadata.input_size).to_dict()
                    for name, path in files.items() if Path(path).suffix == ".onnx"}
        options = runtime_options(model, files, calib, evaluator, metadata, Path(tmp), log)
    for name in results:
        results[name]["latency_ms"] = latency[name]
    return {"model": shown_path(model), "latency_fp32_onnx_ms": latency["FP32 ONNX"], "results": results,
            "shipped": {name: latency[name] for name in shipped},
            "profiles": {n: {"kinds": p["kinds"], "reason": p["reason"]} for n, p in profiles.items()},
            "options": options}


def runtime_options(model: Path, files: dict[str, Path], calib: Any, evaluator: Any, metadata: Any, tmp: Path,
                    log: Any) -> list[dict[str, Any]]:
    """What the runtimes offer before any policy of ours: onnxruntime's INT8 formats and types and its
    graph optimization levels; LiteRT with and without its default XNNPACK delegate. One run, 1 thread."""
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from landmarks.runtimes import load_predictor
    from landmarks.runtimes.tflite_runtime import interpreter_class
    from quant.calibration import CalibrationReader
    from quant.latency import measure_runners
    from quant.ort_int8 import prepare

    prepared = prepare(model, tmp / "options.prepared.onnx")
    reader = CalibrationReader(calib, metadata, "input", limit=256)
    variants = {  # name -> (QuantFormat, activation type, reduce_range)
        "QDQ, u8 activations, s8 weights": (QuantFormat.QDQ, QuantType.QUInt8, False),
        "QDQ, u8/s8, 7-bit weights (reduce_range)": (QuantFormat.QDQ, QuantType.QUInt8, True),
        "QDQ, s8 activations, s8 weights": (QuantFormat.QDQ, QuantType.QInt8, False),
        "QOperator, u8/s8": (QuantFormat.QOperator, QuantType.QUInt8, False),
    }
    made = {}
    for name, (fmt, activations, reduce_range) in variants.items():
        out = tmp / f"options{len(made)}.onnx"
        reader.rewind()
        quantize_static(str(prepared), str(out), reader, quant_format=fmt, per_channel=True,
                        activation_type=activations, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                        calibrate_method=CalibrationMethod.Percentile, extra_options={"WeightSymmetric": True})
        made[name] = out
    shape = [1, 3, metadata.input_size, metadata.input_size]
    feed = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    def ort_runner(path: Path, level: Any) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        options.graph_optimization_level, options.log_severity_level = level, 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: feed})

    def litert_runner(path: Path, xnnpack: bool) -> Any:
        from ai_edge_litert.interpreter import OpResolverType

        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interpreter = interpreter_class()(model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver)
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], [1, *[int(d) for d in detail["shape"][1:]]])
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], np.zeros([1, *[int(d) for d in detail["shape"][1:]]], np.float32))
        return interpreter.invoke

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    rows = [("onnxruntime", "FP32 ONNX", "all", ort_runner(model, levels["all"]), model)]
    rows += [("onnxruntime", name, "all", ort_runner(path, levels["all"]), path) for name, path in made.items()]
    first = made["QDQ, u8 activations, s8 weights"]
    rows += [("onnxruntime", "QDQ, u8 activations, s8 weights", level, ort_runner(first, levels[level]), first)
             for level in ("basic", "extended")]
    tflite_int8 = files["INT8 TFLite, size policy"]
    rows += [("LiteRT", "INT8 TFLite (auto weights)", "XNNPACK" if x else "no delegate", litert_runner(tflite_int8, x),
              tflite_int8) for x in (True, False)]
    timings = measure_runners([r[3] for r in rows], threads=1, rounds=20)
    out = []
    for (runtime, name, setting, _, path), timing in zip(rows, timings, strict=True):
        nme = None
        if runtime == "onnxruntime" and setting == "all":
            nme = evaluator.nme(load_predictor(path, num_threads=2, metadata=metadata))
        out.append({"runtime": runtime, "model": name, "setting": setting, "latency_ms": round(timing.median_ms, 4),
                    "nme_io": nme, "bytes": Path(path).stat().st_size})
        log(f"{runtime} {name} ({setting}): {timing.median_ms:.3f} ms")
    return out


NO_VNNI = (
    "Why INT8 is not faster on this CPU: it has no VNNI (nor AMX), so onnxruntime's and XNNPACK's INT8 "
    "convolutions multiply through AVX2's `vpmaddubsw` and widen the 16-bit sums in two more instructions: "
    "32 multiply-adds per three instructions against 8 per FP32 FMA, at most 1.3x (VNNI's `vpdpbusd` does 32 in "
    "one, 4x). INT8 then gains only where memory "
    "traffic dominates (the pointwise convolutions) and loses where the work is small per byte (the depthwise "
    "and 3-channel convolutions), and the QuantizeLinear / DequantizeLinear and the integer Adds it adds are "
    "pure cost. A 1.5x gain over FP32 needs VNNI or AMX integer kernels (docs/EXPERIMENTS.md, \"INT8 on a "
    "second CPU kind\").")


def table(data: dict[str, Any], cpu: str, flags: str) -> str:
    from quant.profile import KINDS

    base = data["latency_fp32_onnx_ms"]
    lines = [
        "# INT8 speed: FP32 against INT8, per kind of layer, and the speed policy",
        "",
        f"Model `{data['model']}`, quantized as `recipes/300w_pfld025.yaml` does; gate on 300-W common. Batch 1, "
        f"1 thread, all files timed side by side in one process (interleaved rounds). CPU: {cpu} ({flags}).",
        "",
        "| file | policy: kinds kept float | nme_io % | verdict | size | latency | speed vs FP32 ONNX |",
        "|---|---|---:|---|---:|---:|---:|",
        f"| FP32 ONNX | - | - | - | - | {base:.3f} ms | x1.00 |",
        *[f"| {name} (as shipped, from the Intel run) | - | - | - | - | {ms:.3f} ms | x{base / ms:.2f} |"
          for name, ms in data.get("shipped", {}).items()],
    ]
    for name, r in data["results"].items():
        kinds = ", ".join((r.get("speed") or {}).get("float_kinds") or []) or "none"
        lines.append(f"| {name} | {kinds} | {r['nme_io']:.2f} | {r['verdict']} | {r['bytes'] / 1024:.0f} KB | "
                     f"{r['latency_ms']:.3f} ms | x{base / r['latency_ms']:.2f} |")
    names = list(data["profiles"])
    lines += ["", "onnxruntime, microseconds per run per kind of layer (its profiler, 1 thread):", "",
              "| layers | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for kind in KINDS:
        if any(kind in p["kinds"] for p in data["profiles"].values()):
            lines.append(f"| {kind} | " + " | ".join(f"{p['kinds'][kind]:.0f}" if kind in p["kinds"] else "-"
                                                      for p in data["profiles"].values()) + " |")
    options = data.get("options") or []
    if options:
        fp32 = next(o["latency_ms"] for o in options if o["model"] == "FP32 ONNX")
        lines += ["", "The runtimes' own options first (the same FP32 model; percentile calibration, per-channel "
                      "weights; 1 thread, side by side in one run):", "",
                  "| runtime | model | setting | size | latency | speed vs FP32 ONNX | nme_io % |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for o in options:
            nme = f"{o['nme_io']:.2f}" if o["nme_io"] is not None else "-"
            lines.append(f"| {o['runtime']} | {o['model']} | {o['setting']} | {o['bytes'] / 1024:.0f} KB | "
                         f"{o['latency_ms']:.3f} ms | x{fp32 / o['latency_ms']:.2f} | {nme} |")
    for name, r in data["results"].items():
        rows = (r.get("speed") or {}).get("rows") or []
        if not rows:
            continue
        lines += ["", f"{name}: each kind of layer in float against all INT8 (the policy's measurement):", "",
                  "| kind | layers | all INT8 | this kind in float | gain | kept float |",
                  "|---|---:|---:|---:|---:|---|"]
        kept = set((r.get("speed") or {}).get("float_kinds") or [])
        lines += [f"| {row['kind']} | {row['layers']} | {row['all_int8_ms']:.3f} ms | "
                  f"{row['kind_in_float_ms']:.3f} ms | {100 * row['gain']:+.1f} % | "
                  f"{'yes' if all(k in kept for k in row['kind'].split(' + ')) else 'no'} |" for row in rows]
    if "avx2" in flags and "vnni" not in flags and "amx" not in flags:
        lines += ["", NO_VNNI]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "landmarks" / "zoo" / "student.onnx")
    p.add_argument("--name", default="int8_speed")
    p.add_argument("--render", action="store_true", help="rewrite NAME.md from NAME.json, measuring nothing")
    args = p.parse_args(argv)
    with cli_errors("benchmarks/int8_speed.py"):
        if args.render:
            data = json.loads((RESULTS / f"{args.name}.json").read_text())
            save_results(RESULTS, args.name, data, table(data, data["cpu"], data["cpu_flags"]),
                         command="python benchmarks/int8_speed.py")
            return 0
        cpu, flags = cpu_name(), cpu_flags()
        data = run(args.model)
        save_results(RESULTS, args.name, {"cpu": cpu, "cpu_flags": flags, **data}, table(data, cpu, flags),
                     command="python benchmarks/int8_speed.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
