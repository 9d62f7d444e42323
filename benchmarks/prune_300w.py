"""Pruning benchmark on 300-W: pfld025 at ratios 0 / 0.3 / 0.5, each with KD and with ground-truth-only recovery.

Every arm prunes the distilled student with ``distill.prune.prune_checkpoint`` (``ratio`` = share of
inference parameters removed, ``--steps`` steps, ``--epochs-per-step`` fine-tuning epochs after each)
on the 300-W train faces (Helen, LFPW train, AFW: 2,012 faces), recovering either with KD from the
FAN teacher or on the ground truth alone. Ratio-0 arms run the same code path with a channel ratio
of 1e-6, which keeps every width, so they get exactly the same fine-tuning: they separate what the
extra training does from what pruning costs. The "unpruned" row is the input student as it is.

Per arm: ``nme_io`` on the 300-W common test set (Helen + LFPW test, 554 faces), before recovery and
after; inference parameters and MACs; FP32 ONNX bytes (``export.export_checkpoint``, parity-checked);
INT8 ONNX bytes and ``nme_io`` (``quant.ptq.run_ptq``, ORT QDQ U8S8, calibrated on train faces);
batch-1 latency (onnxruntime, 1 thread, median), all models timed interleaved in one final pass.

Resumable: a finished arm leaves ``<work>/<arm>/arm.json`` and is skipped on a re-run; an interrupted
arm restarts. Results: ``benchmarks/results/prune_300w.{json,md}``.

    python benchmarks/prune_300w.py --student runs/300w/kd/student.pt --teacher runs/300w/kd/teacher.pt
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_name  # noqa: E402
from landmarks.atomic import write_json, write_text  # noqa: E402
from landmarks.data.specs import data_root  # noqa: E402
from landmarks.errors import ConfigError, cli_errors  # noqa: E402

DATA = data_root() / "300w"
TRAIN = ("helen/trainset", "lfpw/trainset", "afw")
TEST = ("helen/testset", "lfpw/testset")
RESULTS = ROOT / "benchmarks" / "results" / "prune_300w"
KEEP_ALL = 1e-6  # a channel ratio that rounds back to every layer's full width
VAL_SEED = 10_000_000  # distill.prune validates synthetic faces with seed + 10,000,000 (seed 0 here)


def _spec(parts: tuple[str, ...]) -> str:
    return ",".join(str(DATA / p) for p in parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", type=Path, default=ROOT / "runs/300w/kd/student.pt", help="distilled pfld025")
    p.add_argument("--teacher", type=Path, default=ROOT / "runs/300w/kd/teacher.pt", help="FAN teacher for KD")
    p.add_argument("--data", default=None, help="fine-tuning faces (default: the 300-W train folders)")
    p.add_argument("--val", default=None, help="test faces (default: the 300-W common test set)")
    p.add_argument("--calib", default=None, help="INT8 calibration faces (default: --data)")
    p.add_argument("--ratios", default="0,0.3,0.5", help="comma-separated parameter ratios (0 = unpruned)")
    p.add_argument("--steps", type=int, default=2, help="pruning steps per arm")
    p.add_argument("--epochs-per-step", type=int, default=2, help="fine-tuning epochs after each step")
    p.add_argument("--importance", default="l1", choices=("l1", "l2", "taylor", "bn"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--calib-count", type=int, default=256)
    p.add_argument("--work", type=Path, default=ROOT / "runs/prune_300w", help="arm folders (weights, ONNX)")
    p.add_argument("--results", type=Path, default=RESULTS, help="results path without suffix")
    p.add_argument("--label", default="300-W (real data)", help="what the student was trained on, for the table")
    p.add_argument("--progress", action="store_true")
    return p


def _arms(ratios: list[float]) -> list[tuple[str, float, bool]]:
    return [(f"r{r:g}_{'kd' if kd else 'gt'}", r, kd) for r in ratios for kd in (True, False)]


def _prune_arm(args: argparse.Namespace, ratio: float, kd: bool, out: Path) -> dict[str, Any]:
    from distill.prune import PruneConfig, prune_checkpoint

    target = {"ratio": ratio} if ratio > 0 else {"channel_ratio": KEEP_ALL}
    config = PruneConfig(**target, importance=args.importance, steps=args.steps,
                         finetune_epochs=args.epochs_per_step, batch_size=args.batch_size, lr=args.lr,
                         num_workers=1)
    report = prune_checkpoint(args.student, config, data=args.data, val_data=args.val,
                              teacher_checkpoint=args.teacher if kd else None, out=out, progress=args.progress,
                              log=lambda line: print(f"  {line}", file=sys.stderr))
    return {
        "checkpoint": str(report.checkpoint),
        "channel_sparsity": report.after.channel_sparsity,
        "nme_before_recovery": report.after.nme_io_pruned,
        "nme_val_in_run": report.after.nme_io,
        "finetune_seconds": round(sum(s.finetune_seconds for s in report.steps), 1),
        "prune_report": str(report.report_path),
    }


def _measure_arm(args: argparse.Namespace, row: dict[str, Any], out: Path, sets: dict[str, Any]) -> dict[str, Any]:
    """Footprint, test nme (torch), FP32 ONNX (parity-checked) and INT8 ONNX of an arm's checkpoint."""
    from distill.prune import measure
    from export import ExportConfig, export_checkpoint
    from landmarks.evaluate import evaluate
    from landmarks.models import load_checkpoint
    from landmarks.runtimes.torch_runtime import TorchPredictor
    from quant.accuracy_gate import GateConfig
    from quant.ort_int8 import StaticInt8Config
    from quant.ptq import PtqConfig, run_ptq

    ckpt = load_checkpoint(row["checkpoint"])
    model = ckpt.build()
    footprint = measure(model, ckpt.metadata.input_size)
    nme = evaluate(TorchPredictor(model, ckpt.metadata), sets["val"], batch_size=64, progress=False).metrics.nme_io
    export_cfg = ExportConfig(formats=("onnx",), parity_data=args.val, parity_count=64, num_threads=1)
    (fp32,) = export_checkpoint(row["checkpoint"], out / "onnx", export_cfg, name="model")
    ptq_cfg = PtqConfig(calib=args.calib, eval=args.val, gate=GateConfig(0.02),
                        onnx=StaticInt8Config(calib_count=args.calib_count), fallback=False, threads=1,
                        latency=False)
    ptq = run_ptq(fp32.path, out / "onnx" / "model.int8.onnx", ptq_cfg, calib_dataset=sets["calib"],
                  eval_dataset=sets["val"], log=lambda line: print(f"  {line}", file=sys.stderr))
    return {**row, "nme_torch": nme, "params": footprint.params, "macs": footprint.macs,
            "fp32_bytes_weights": footprint.fp32_bytes, "onnx_fp32": str(fp32.path), "onnx_fp32_bytes": fp32.bytes,
            "parity_max_abs_diff": fp32.parity.max_abs_diff, "nme_onnx_fp32": ptq.report.nme_fp32,
            "onnx_int8": str(ptq.artifact), "onnx_int8_bytes": ptq.report.bytes_int8,
            "nme_int8": ptq.report.nme_int8, "int8_verdict": ptq.report.verdict}


def open_sets(args: argparse.Namespace) -> dict[str, Any]:
    """The test and calibration faces, opened once: every arm is scored on the same faces.

    The test seed is the one ``prune_checkpoint`` validates with, so a synthetic test set is the
    same faces there too (a real one has no seed-dependent content).
    """
    from landmarks.data import open_dataset
    from landmarks.models import load_checkpoint

    meta = load_checkpoint(args.student).metadata
    common = {"input_size": meta.input_size, "crop_scale": meta.crop_scale}
    return {"val": open_dataset(args.val, seed=VAL_SEED, synthetic_count=300, **common),
            "calib": open_dataset(args.calib, seed=0, synthetic_count=args.calib_count, **common)}


def run_arm(args: argparse.Namespace, name: str, ratio: float, kd: bool | None, sets: dict[str, Any]) -> dict[str, Any]:
    out = args.work / name
    done = out / "arm.json"
    if done.is_file():
        print(f"[skip] {name}: finished earlier ({done})", file=sys.stderr)
        return json.loads(done.read_text())
    print(f"== {name}", file=sys.stderr)
    started = time.perf_counter()
    row = {"checkpoint": str(args.student), "finetune_seconds": 0.0, "channel_sparsity": 0.0}
    if kd is not None:
        row = _prune_arm(args, ratio, kd, out)
    row = {"arm": name, "ratio": ratio, "recovery": "none" if kd is None else ("KD" if kd else "ground truth"),
           **_measure_arm(args, row, out, sets), "wall_seconds": 0.0}
    row.setdefault("nme_before_recovery", row["nme_torch"])
    row["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_json(done, row)
    return row


def add_latency(rows: list[dict[str, Any]]) -> None:
    """Batch-1, 1 thread, median; every model in one interleaved pass, so load drifts hit all alike."""
    from quant.latency import measure as measure_latency

    paths = [p for r in rows for p in (r["onnx_fp32"], r["onnx_int8"])]
    timings = measure_latency(paths, threads=1, warmup=20, rounds=20, runs_per_round=20)
    for i, row in enumerate(rows):
        row["latency_fp32_ms"] = round(timings[2 * i].median_ms, 4)
        row["latency_int8_ms"] = round(timings[2 * i + 1].median_ms, 4)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors("prune_300w"):
        args.data = args.data or _spec(TRAIN)
        args.val = args.val or _spec(TEST)
        args.calib = args.calib or args.data
        ratios = [float(r) for r in args.ratios.split(",")]
        if not args.student.is_file():
            raise ConfigError(f"no student checkpoint at {args.student}; train one with benchmarks/distill_300w.py")
        started = time.perf_counter()
        sets = open_sets(args)
        rows = [run_arm(args, "unpruned", 0.0, None, sets)]
        rows += [run_arm(args, name, r, kd, sets) for name, r, kd in _arms(ratios)]
        add_latency(rows)
        summary = _summary(args, rows, time.perf_counter() - started)
        write_json(args.results.with_suffix(".json"), summary)
        write_text(args.results.with_suffix(".md"), _markdown(summary))
        print(_markdown(summary))
    return 0


def _summary(args: argparse.Namespace, rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    base = rows[0]
    for row in rows:
        row["param_reduction"] = 1 - row["params"] / base["params"]
        row["mac_reduction"] = 1 - row["macs"] / base["macs"]
        row["nme_vs_unpruned"] = row["nme_torch"] / base["nme_torch"] - 1
        row["speedup_fp32"] = base["latency_fp32_ms"] / row["latency_fp32_ms"]
    return {
        "label": args.label, "student": str(args.student), "teacher": str(args.teacher), "train": args.data,
        "test": args.val, "calib": args.calib, "calib_count": args.calib_count, "steps": args.steps,
        "epochs_per_step": args.epochs_per_step, "importance": args.importance, "batch_size": args.batch_size,
        "lr": args.lr, "cpu": cpu_name(), "torch": torch.__version__, "onnxruntime": ort.__version__,
        "python": platform.python_version(), "metric": "nme_io percent (inter-ocular, outer eye corners)",
        "wall_seconds_this_run": round(seconds, 1), "rows": rows,
    }


def _markdown(s: dict[str, Any]) -> str:
    lines = [
        f"# Structured pruning + recovery: pfld025, {s['label']}",
        "",
        f"student `{s['student']}`, teacher `{s['teacher']}`  ",
        f"fine-tuning: `{s['train']}`; test: `{s['test']}`  ",
        f"{s['steps']} pruning step(s) x {s['epochs_per_step']} epoch(s) of recovery, importance {s['importance']}, "
        f"lr {s['lr']}, batch {s['batch_size']}; INT8: ORT QDQ U8S8, {s['calib_count']} calibration faces  ",
        f"latency: onnxruntime {s['onnxruntime']}, batch 1, 1 thread, median, {s['cpu']}",
        "",
        "| arm | ratio | recovery | params | -params | MACs (M) | -MACs | FP32 ONNX KB | INT8 ONNX KB | "
        "nme before rec. | nme_io | vs unpruned | nme INT8 | FP32 ms | INT8 ms | FP32 speed-up | fine-tune s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s["rows"]:
        lines.append(
            f"| {r['arm']} | {r['ratio']:g} | {r['recovery']} | {r['params']:,} | {100 * r['param_reduction']:.1f}% | "
            f"{r['macs'] / 1e6:.1f} | {100 * r['mac_reduction']:.1f}% | {r['onnx_fp32_bytes'] / 1024:.0f} | "
            f"{r['onnx_int8_bytes'] / 1024:.0f} | {r['nme_before_recovery']:.3f} | {r['nme_torch']:.3f} | "
            f"{100 * r['nme_vs_unpruned']:+.1f}% | {r['nme_int8']:.3f} | {r['latency_fp32_ms']:.3f} | "
            f"{r['latency_int8_ms']:.3f} | x{r['speedup_fp32']:.2f} | {r['finetune_seconds']:.0f} |"
        )
    lines += [
        "",
        "nme columns: `nme_io` percent on the test set (torch FP32; `nme before rec.` is right after the last "
        "pruning step). `vs unpruned`: relative to the input student. Ratio-0 arms are fine-tuned with the same "
        "schedule but not pruned. `-params`/`-MACs`: inference path only (the training-only pose branch is "
        "excluded). INT8 nme from the same ONNX models in onnxruntime.",
        "",
        f"Command: `python benchmarks/prune_300w.py {' '.join(sys.argv[1:])}` (resumable; finished arms are skipped)",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
