"""File size and batch-1 CPU latency of exported models: torch vs onnxruntime vs LiteRT, side by side.

Each model (random-init weights: latency does not depend on their values) is exported with
:func:`export.export_model` (parity-checked on a few synthetic faces), then timed in one process:
for each thread count, the three runtimes take turns in short rounds, so load from other
processes hits them alike. Latency is the median of all timed calls after warm-up.

    python benchmarks/export_latency.py                      # pfld025, pfld100, teacher fan2
    python benchmarks/export_latency.py --models pfld025 --repeats 50
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export import ExportConfig, export_model  # noqa: E402
from landmarks.atomic import write_json, write_text  # noqa: E402
from landmarks.metadata import ArtifactMetadata  # noqa: E402
from landmarks.models import create_model  # noqa: E402

# name -> (registry arch, its kwargs); the teacher is a reduced FAN so the run stays short.
MODELS: dict[str, tuple[str, dict]] = {
    "pfld025": ("pfld025", {"input_size": 112}),
    "pfld100": ("pfld100", {"input_size": 112}),
    "fan2-w128-i128": ("fan2", {"width": 128, "input_size": 128}),
}
RUNTIMES = ("torch", "onnxruntime", "litert")


def torch_runner(model: torch.nn.Module, x: np.ndarray, threads: int) -> Callable[[], object]:
    tensor = torch.from_numpy(x)

    def run() -> object:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return model.forward_landmarks(tensor)

    return run


def _ort_runner(path: Path, x: np.ndarray, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def _litert_runner(path: Path, x_nhwc: np.ndarray, threads: int) -> Callable[[], object]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)  # XNNPACK by default
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(x_nhwc.shape))
    interpreter.allocate_tensors()

    def run() -> object:
        interpreter.set_tensor(index, x_nhwc)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    return run


def time_side_by_side(runners: dict[str, Callable[[], object]], repeats: int, warmup: int,
                       rounds: int) -> dict[str, float]:
    """Median ms per call; runtimes alternate in ``rounds`` chunks of ``repeats / rounds`` calls."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    chunk = max(1, repeats // rounds)
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(chunk):
                start = time.perf_counter()
                run()
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_model(label: str, arch: str, kwargs: dict, args: argparse.Namespace, workdir: Path) -> dict:
    torch.manual_seed(0)
    model = create_model(arch, **kwargs).eval()
    size = kwargs["input_size"]
    metadata = ArtifactMetadata(input_size=size, source=f"{arch}@random-init")
    config = ExportConfig(formats=("onnx", "tflite"), fp16=True, parity_data="synthetic", parity_count=8)
    artifacts = {(a.format, a.precision): a for a in export_model(model, metadata, workdir, config, name=label)}
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    latency = {}
    for threads in args.threads:
        runners = {
            "torch": torch_runner(model, x, threads),
            "onnxruntime": _ort_runner(artifacts["onnx", "fp32"].path, x, threads),
            "litert": _litert_runner(artifacts["tflite", "fp32"].path, x.transpose(0, 2, 3, 1).copy(), threads),
        }
        latency[str(threads)] = time_side_by_side(runners, args.repeats, args.warmup, args.rounds)
        print(f"{label} threads={threads}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in latency[str(threads)].items()),
              flush=True)
    return {
        "arch": arch,
        "arch_config": kwargs,
        "params": graph_params(artifacts["onnx", "fp32"].path),
        "bytes": {
            "onnx_fp32": artifacts["onnx", "fp32"].bytes,
            "onnx_fp16": artifacts["onnx", "fp16"].bytes,
            "tflite_fp32": artifacts["tflite", "fp32"].bytes,
        },
        "parity_max_abs_diff": {f"{f}_{p}": a.parity.max_abs_diff for (f, p), a in artifacts.items()},
        "latency_ms": latency,
    }


def graph_params(onnx_path: Path) -> int:
    """Weights in the exported inference graph (no pose branch, BN folded), not the training model."""
    import onnx

    return sum(int(np.prod(t.dims)) for t in onnx.load(str(onnx_path)).graph.initializer)


def _markdown(result: dict) -> str:
    lines = [
        "# Export size and batch-1 CPU latency",
        "",
        f"Machine: {result['machine']}; {result['cpu_count']} CPUs; load average at start "
        f"{result['loadavg_start']}, at end {result['loadavg_end']} (shared machine: absolute numbers "
        "are noisy, ratios within a row were measured side by side).",
        f"Median of {result['repeats']} calls after {result['warmup']} warm-up calls, runtimes alternating "
        f"in {result['rounds']} rounds. Weights: random init. torch {result['versions']['torch']}, "
        f"onnxruntime {result['versions']['onnxruntime']}, ai-edge-litert {result['versions']['ai_edge_litert']} "
        "(XNNPACK delegate).",
        "",
        "| model | params (graph) | ONNX FP32 | ONNX FP16 | TFLite FP32 | threads | torch ms | ORT ms | LiteRT ms "
        "| ORT / torch | LiteRT / torch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m in result["models"].items():
        b = m["bytes"]
        for threads, lat in m["latency_ms"].items():
            t = lat["torch"]
            sizes = " | ".join(f"{b[k] / 1e6:.2f} MB" for k in ("onnx_fp32", "onnx_fp16", "tflite_fp32"))
            lines.append(
                f"| {label} | {m['params'] / 1e6:.2f} M | {sizes} | {threads} | {t:.2f} "
                f"| {lat['onnxruntime']:.2f} | {lat['litert']:.2f} "
                f"| {lat['onnxruntime'] / t:.2f} | {lat['litert'] / t:.2f} |"
            )
    lines += [
        "",
        "Ratios below 1 mean the exported runtime is faster than eager torch. On a loaded 2-core machine the "
        "2-thread rows mostly measure oversubscription, which hits torch's OpenMP pool hardest; compare "
        "runtimes within a row, and prefer the 1-thread rows for absolute numbers.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, out of {', '.join(MODELS)}")
    parser.add_argument("--threads", default="1,2", help="thread counts to time (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per runtime (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=10, help="alternation rounds (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="folder for export_latency.json and .md (default: benchmarks/results)")
    args = parser.parse_args(argv)
    labels = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in labels if m not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    args.threads = [int(t) for t in args.threads.split(",")]

    import ai_edge_litert
    import onnxruntime

    result = {
        "machine": f"{platform.processor() or platform.machine()} ({platform.platform()})",
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
        "repeats": args.repeats,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "weights": "random init (seed 0)",
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                     "ai_edge_litert": getattr(ai_edge_litert, "__version__", "unknown")},
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        for label in labels:
            arch, kwargs = MODELS[label]
            result["models"][label] = bench_model(label, arch, kwargs, args, Path(tmp))
    result["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    write_json(args.out / "export_latency.json", result)
    write_text(args.out / "export_latency.md", _markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
