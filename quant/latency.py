"""Batch-1 latency of the model alone (no preprocessing): median over many runs after warm-up.

FP32 and INT8 are timed in the same process, interleaved round by round, with a fixed thread
count, so that their ratio is not skewed by another job on the machine starting midway.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_THREADS = 2


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    runs: int
    threads: int
    round_ms: tuple[float, ...] = ()  # the median of each round: rounds of two models run back to back pair up


def runner(path: str | os.PathLike[str], threads: int = DEFAULT_THREADS,
           input_size: int | None = None) -> tuple[Callable[[], None], str]:
    """A zero-argument function running the model once on a fixed batch-1 input, and its runtime.

    Dynamic input dimensions other than the batch are ``input_size`` (a model whose image size is
    dynamic is timed at the size it is described with)."""
    path = Path(path)
    if path.suffix == ".tflite":
        return _tflite_runner(path, threads), "litert"
    return _onnx_runner(path, threads, input_size), "onnxruntime"


def measure(
    paths: Sequence[str | os.PathLike[str]],
    *,
    threads: int = DEFAULT_THREADS,
    warmup: int = 20,
    rounds: int = 10,
    runs_per_round: int = 20,
    input_size: int | None = None,
) -> list[Latency]:
    """Median latency of each model; rounds alternate between models."""
    fns = [runner(p, threads, input_size)[0] for p in paths]
    return measure_runners(fns, threads=threads, warmup=warmup, rounds=rounds, runs_per_round=runs_per_round)


def measure_runners(fns: Sequence[Callable[[], None]], *, threads: int, warmup: int = 20, rounds: int = 10,
                    runs_per_round: int = 20) -> list[Latency]:
    """:func:`measure` for zero-argument runners (a model in a session configured some other way)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    per_round: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, acc, medians in zip(fns, times, per_round, strict=True):
            start = len(acc)
            for _ in range(runs_per_round):
                begin = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - begin)
            medians.append(float(np.median(acc[start:]) * 1e3))
    return [
        Latency(float(np.median(t) * 1e3), float(np.percentile(t, 90) * 1e3), len(t), threads, tuple(r))
        for t, r in zip(times, per_round, strict=True)
    ]


def _onnx_runner(path: Path, threads: int, input_size: int | None = None) -> Callable[[], None]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    shape = [1, *[d if isinstance(d, int) and d > 0 else input_size or 1 for d in model_input.shape[1:]]]
    feed = {model_input.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    return lambda: session.run(None, feed)


def _tflite_runner(path: Path, threads: int) -> Callable[[], None]:
    from landmarks.runtimes.tflite_runtime import interpreter_class

    interpreter = interpreter_class()(model_path=str(path), num_threads=threads)
    detail = interpreter.get_input_details()[0]
    shape = [1, *[int(d) for d in detail["shape"][1:]]]
    if list(detail["shape"]) != shape:
        interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    dtype = np.dtype(detail["dtype"])
    data = np.zeros(shape, dtype) if np.issubdtype(dtype, np.integer) else np.random.default_rng(0).standard_normal(
        shape).astype(dtype)
    interpreter.set_tensor(detail["index"], data)
    return interpreter.invoke
