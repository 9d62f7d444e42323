"""What quantization-aware fine-tuning does to a pruned student's INT8 models, in the shipping runtimes.

Takes a recipe run's student before quantization-aware epochs (``--checkpoint``, default the run's
``checkpoints/prune/pruned.pt``) and its teacher; for each arm it exports FP32 ONNX
(``python -m export``) and quantizes it to ONNX and TFLite with ``python -m quant.ptq`` as the 300-W
recipe does (256 training faces for calibration, weight scales ``auto``, up to 16 ops kept in float
when the all-INT8 model fails), each gated against its own FP32 model on 300-W common. Arms:
``ptq`` (the student as it is) and ``qat_<E>`` (E epochs of :func:`distill.prune.qat_checkpoint`
first, output KD from the teacher).

    python -m recipes run recipes/300w_pfld025.yaml --set prune.qat_epochs=0 --out runs/300w_noqat
    python benchmarks/qat_int8.py --recipe-run runs/300w_noqat --epochs 6

Resumable: an arm with its ``arm.json`` is read back, not rerun.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_name, save_results  # noqa: E402
from benchmarks.distill_gap import RESULTS, SHARED  # noqa: E402
from landmarks.atomic import write_json  # noqa: E402
from landmarks.errors import cli_errors  # noqa: E402

W300 = SHARED / "300w"
TRAIN = ",".join(str(W300 / d) for d in ("helen/trainset", "lfpw/trainset", "afw"))
TEST = ",".join(str(W300 / d) for d in ("helen/testset", "lfpw/testset"))
CALIB = TRAIN  # as the recipe: training faces, never the test set


def _ptq(onnx: Path, out: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "quant.ptq", str(onnx), "--calib", CALIB, "--calib-count", "256",
               "--eval", TEST, "--no-latency", "--max-float-nodes", "16", "--out", str(out)]
    subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    reports = list(out.parent.glob(f"{out.name.split('.')[0]}.int8.report.json"))
    reports += list((out.parent / "rejected").glob(f"{out.name.split('.')[0]}.int8.report.json"))
    if not reports:
        raise RuntimeError(f"quant.ptq wrote no report for {out}")
    report = json.loads(reports[0].read_text())
    keys = ("verdict", "nme_fp32", "nme_int8", "regression", "bytes_int8", "float_nodes")
    return {key: report[key] for key in keys} | {"attempts": report["attempts"]}


def run_arm(name: str, checkpoint: Path, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "export", str(checkpoint), "--formats", "onnx", "--out",
                    str(folder / "export")], cwd=ROOT, check=True, capture_output=True)
    onnx = folder / "export" / f"{checkpoint.stem}.onnx"
    return {"arm": name,
            "onnx": _ptq(onnx, folder / "onnx.int8.onnx"),
            "tflite": _ptq(onnx, folder / "tflite.int8.tflite")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe-run", type=Path, default=ROOT / "runs" / "300w_recipe")
    p.add_argument("--checkpoint", type=Path, default=None, help="student before QAT (default: the run's pruned.pt)")
    p.add_argument("--epochs", type=int, nargs="+", default=[6])
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "qat_int8")
    p.add_argument("--name", default="qat_int8")
    args = p.parse_args(argv)
    with cli_errors("benchmarks/qat_int8.py"):
        from distill.config import KDConfig
        from distill.prune import PruneConfig, qat_checkpoint

        pruned = args.checkpoint or args.recipe_run / "checkpoints" / "prune" / "pruned.pt"
        teacher = args.recipe_run / "checkpoints" / "teacher.pt"
        rows = []
        for epochs in [0, *args.epochs]:
            name = f"qat_{epochs}" if epochs else "ptq"
            folder = args.work / name
            done = folder / "arm.json"
            if done.is_file():
                rows.append(json.loads(done.read_text()))
                continue
            checkpoint, qat = pruned, None
            if epochs:
                config = PruneConfig(ratio=0.3, qat_epochs=epochs, qat_lr=args.lr, val_split=0.1,
                                     kd=KDConfig(feature_weight=0.0))
                checkpoint, report = qat_checkpoint(pruned, config, data=TRAIN, teacher_checkpoint=teacher,
                                                    out=folder / "qat", progress=False, log=print)
                qat = {"val_nme_io_int8_simulated_before": report.nme_io_int8_before,
                       "val_nme_io_int8_simulated_after": report.nme_io_int8_after,
                       "val_nme_io_float_after": report.nme_io, "seconds": report.seconds}
            row = {**run_arm(name, checkpoint, folder), "epochs": epochs, "lr": args.lr if epochs else None,
                   "qat": qat}
            write_json(done, row)
            rows.append(row)
        save_results(RESULTS, args.name, {"cpu": cpu_name(), "recipe_run": str(args.recipe_run), "arms": rows},
                     _table(rows), command=f"python benchmarks/qat_int8.py --recipe-run {args.recipe_run} "
                                           f"--epochs {' '.join(map(str, args.epochs))}")
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["# Quantization-aware fine-tuning of the pruned student: INT8 in the shipping runtimes",
             "",
             "300-W common (554 faces), nme_io %; each INT8 model gated against its own FP32 model (max +2 %),",
             "quantized as the 300-W recipe does: 256 training faces for calibration (minmax), weight scales",
             "auto, then per-channel, then up to 16 ops in float while the gate rejects. In brackets: the",
             "first all-INT8 candidate's change, then the final one's.",
             "",
             "| arm | QAT epochs | val NME, INT8 simulated: before -> after | FP32 | INT8 ONNX | INT8 TFLite |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        q = r["qat"]
        sim = f"{q['val_nme_io_int8_simulated_before']:.2f} -> {q['val_nme_io_int8_simulated_after']:.2f}" if q else ""
        lines.append(f"| {r['arm']} | {r['epochs']} | {sim} | {r['onnx']['nme_fp32']:.2f} | "
                     f"{_cell(r['onnx'])} | {_cell(r['tflite'])} |")
    return "\n".join(lines)


def _cell(q: dict[str, Any]) -> str:
    first = q["attempts"][0]["regression"] if q["attempts"] else q["regression"]
    floats = f", {len(q['float_nodes'])} ops float" if q["float_nodes"] else ""
    final = f"{100 * q['regression']:+.1f} %{floats}"
    return f"{q['nme_int8']:.2f} ({100 * first:+.1f} % all-INT8; {final}, {q['verdict']})"


if __name__ == "__main__":
    raise SystemExit(main())
