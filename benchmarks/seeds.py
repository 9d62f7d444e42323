"""The chain's run-to-run spread: the distilled student and the shipped point, over training seeds.

Each seed is a pair of finished runs of ``recipes/300w_pfld025.yaml``: the one that distilled the
student (``--set seed=S``; its unpruned student's test and validation nme_io) and the one that made
the shipped point from it (pruned, quantization-aware, INT8: a recipe run or a ``benchmarks/pareto.py``
arm). A seed whose run folders are gone can be given by the numbers its committed records hold
(``--recorded``: the shipped run's manifest and ``benchmarks/results/distill_gap.json``). The table
gives each seed, then the mean and the min-max of every column: a difference between two settings
smaller than that spread is not a difference.

    python benchmarks/seeds.py --recorded 0 --run 1=runs/seed1,runs/pareto/pareto_seed1/ratio_0.3/run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import save_results, shown_path  # noqa: E402
from landmarks.errors import ConfigError, cli_errors  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
COLUMNS = ("student_val", "student_test", "pruned_test", "onnx_int8_test", "tflite_int8_test")


def from_runs(seed: int, distilled: Path, shipped: Path, cpu: str) -> dict[str, Any]:
    """One seed from its two run folders."""
    distill = json.loads((distilled / "manifest.json").read_text())
    metrics = json.loads((distilled / "checkpoints" / "metrics.json").read_text())
    point = json.loads((shipped / "manifest.json").read_text())
    artifacts = {a["name"]: a for a in point["artifacts"]}
    return {"seed": seed, "cpu": cpu, "source": f"{shown_path(distilled)}, {shown_path(shipped)}",
            "student_val": metrics["student"]["nme_io"], "student_test": distill["references"]["torch_fp32"]["nme_io"],
            "pruned_test": point["references"]["torch_fp32"]["nme_io"],
            "onnx_int8_test": artifacts.get("onnx_int8", {}).get("nme_io"),
            "tflite_int8_test": artifacts.get("tflite_int8", {}).get("nme_io"),
            "verdicts": {n: artifacts[n]["verdict"] for n in ("onnx_int8", "tflite_int8") if n in artifacts}}


def recorded(seed: int, cpu: str) -> dict[str, Any]:
    """The seed of the committed 300-W run, from its records (its run folder is not kept)."""
    gap = json.loads((RESULTS / "distill_gap.json").read_text())
    manifest = json.loads((ROOT / "docs" / "recipe_300w_pfld025" / "manifest.json").read_text())
    if manifest["recipe"]["config"]["seed"] != seed:
        raise ConfigError(f"the committed 300-W run has seed {manifest['recipe']['config']['seed']}, not {seed}")
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    return {"seed": seed, "cpu": cpu, "source": "docs/recipe_300w_pfld025/manifest.json, distill_gap.json",
            "student_val": gap["student_kd_val_nme_io"], "student_test": gap["student_kd_nme_io"],
            "pruned_test": manifest["references"]["torch_fp32"]["nme_io"],
            "onnx_int8_test": artifacts["onnx_int8"]["nme_io"], "tflite_int8_test": artifacts["tflite_int8"]["nme_io"],
            "verdicts": {name: artifacts[name]["verdict"] for name in ("onnx_int8", "tflite_int8")}}


def spread(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for column in COLUMNS:
        values = [r[column] for r in rows if r.get(column) is not None]
        if values:
            out[column] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values),
                           "range": max(values) - min(values), "seeds": len(values)}
    return out


def _cell(row: dict[str, Any], column: str) -> str:
    """A seed's number; an INT8 file its gate rejected says so."""
    if row.get(column) is None:
        return "-"
    verdict = row.get("verdicts", {}).get(column.removesuffix("_test"), "pass")
    return f"{row[column]:.2f}" + ("" if verdict == "pass" else f" ({verdict})")


def table(rows: list[dict[str, Any]], summary: dict[str, dict[str, float]]) -> str:
    head = ("seed", "CPU", "student val", "student test", "pruned (torch) test", "INT8 ONNX test", "INT8 TFLite test")
    lines = [
        "# Run-to-run spread of the 300-W chain (nme_io %, 300-W common unless marked val)",
        "",
        "The distilled student and the shipped point (30 % pruned, KD recovery, quantization-aware epochs, INT8) "
        "per training seed. The seeds also ran on different CPUs, which changes the arithmetic of training "
        "(bf16 autocast where the CPU has it) and of onnxruntime's integer kernels, so the spread below is "
        "that of seed and machine together. Validation is 10 % of the training folders' photos chosen by the seed, "
        "so each seed's validation number is on its own split; the test set is the same for all.",
        "",
        "| " + " | ".join(head) + " |",
        "|---|---|" + "---:|" * (len(head) - 2),
    ]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['cpu']} | " + " | ".join(
            _cell(r, c) for c in COLUMNS) + " |")
    lines.append("| mean | | " + " | ".join(f"{summary[c]['mean']:.2f}" if c in summary else "-" for c in COLUMNS)
                 + " |")
    lines.append("| min-max | | " + " | ".join(
        f"{summary[c]['min']:.2f}-{summary[c]['max']:.2f}" if c in summary else "-" for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", default=[], metavar="SEED=DISTILLED,SHIPPED",
                   help="a seed's two run folders (the distilling run, the run that made the shipped point)")
    p.add_argument("--recorded", type=int, action="append", default=[], metavar="SEED",
                   help="the committed 300-W run's seed, from its records")
    p.add_argument("--recorded-cpu", default="Intel (AVX-512, AMX)")
    p.add_argument("--name", default="seeds")
    args = p.parse_args(argv)
    with cli_errors("benchmarks/seeds.py"):
        from benchmarks.common import cpu_name

        rows = [recorded(seed, args.recorded_cpu) for seed in args.recorded]
        for item in args.run:
            seed, _, folders = item.partition("=")
            distilled, _, shipped = folders.partition(",")
            if not seed.isdigit() or not distilled or not shipped:
                raise ConfigError(f"--run {item!r}: expected SEED=DISTILLED_RUN,SHIPPED_RUN")
            rows.append(from_runs(int(seed), Path(distilled), Path(shipped), cpu_name()))
        if len(rows) < 2:
            raise ConfigError("a spread needs at least two seeds")
        summary = spread(rows)
        shown = [f"--recorded {seed}" for seed in args.recorded]
        shown += [f"--run {r['seed']}={r['source'].replace(', ', ',')}" for r in rows[len(args.recorded):]]
        save_results(RESULTS, args.name, {"rows": rows, "spread": summary}, table(rows, summary),
                     command="python benchmarks/seeds.py " + " ".join(shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
