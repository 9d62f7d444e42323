"""The accuracy / size / speed front of pruning: one distilled student pruned at several ratios, each point
made exactly as the 300-W recipe makes what it ships.

For each prune ratio (default 0, 0.15, 0.3, 0.45; ``auto`` adds the recipe's accuracy-aware choice)
this runs ``python -m recipes run recipes/300w_pfld025.yaml`` starting from a finished recipe run's
distilled student and teacher (``student.checkpoint``, ``teacher.checkpoint``): pruning with KD
recovery and the quantization-aware epochs, FP32 ONNX and TFLite export, INT8 ONNX and TFLite,
each gated on 300-W common with its chain regression against the unpruned student. Ratio 0 is the
unpruned student with the same quantization-aware epochs (``distill.prune.qat_checkpoint``), so
every point had the same treatment but the pruning. Then, side by side in one process, the
batch-1 latency of every file on 1 thread, and each model's nme_io on the validation split (10 % of
the training folders' photos, the split every choice was made on).

    python benchmarks/pareto.py --recipe-run runs/300w_recipe                 # -> benchmarks/results/pareto.*
    python benchmarks/pareto.py --recipe-run runs/300w_seed1 --name pareto_seed1

Each ratio's recipe run lives in ``--work/<name>/ratio_<r>`` and is resumed or reused (the recipe
caches its stages). Rows of ``pareto.json``: one per (ratio, format) with ``ratio``, ``format``,
``precision``, ``params``, ``macs``, ``bytes``, ``latency_ms``, ``val_nme_io``, ``test_nme_io``,
``chain_regression``, ``verdict``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_name, save_results, shown_path  # noqa: E402
from landmarks.errors import ConfigError, cli_errors  # noqa: E402

RECIPE = ROOT / "recipes" / "300w_pfld025.yaml"
RESULTS = ROOT / "benchmarks" / "results"
FORMATS = (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"), ("tflite", "int8"))
ARTIFACT = {("onnx", "fp32"): "onnx_fp32", ("onnx", "int8"): "onnx_int8", ("tflite", "int8"): "tflite_int8"}


def arm(ratio: str, recipe_run: Path, folder: Path, seed: int, overrides: list[str],
        log: Any = print) -> dict[str, Any]:
    """One point: the recipe from the finished run's student at ``ratio``; its manifest."""
    student = recipe_run / "checkpoints" / "student.pt"
    teacher = recipe_run / "checkpoints" / "teacher.pt"
    for path in (student, teacher):
        if not path.is_file():
            raise ConfigError(f"{path}: not a finished recipe run (no distilled student and teacher)")
    sets = [f"teacher.checkpoint={teacher}", "student.baseline=false", f"seed={seed}", *overrides]
    if ratio == "0":
        student = _qat_only(student, teacher, folder / "qat", seed, log)
        sets += ["prune.enabled=false"]
    else:
        sets += [f"prune.ratio={ratio}"]
    sets.append(f"student.checkpoint={student}")
    command = [sys.executable, "-m", "recipes", "run", str(RECIPE), "--out", str(folder / "run"), "--no-progress"]
    command += [arg for item in sets for arg in ("--set", item)]
    log(f"ratio {ratio}: {' '.join(command[2:])}")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"ratio {ratio}: the recipe failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads((folder / "run" / "manifest.json").read_text())


def finished_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an arm made earlier, for ``--collect``."""
    path = folder / "run" / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"{shown_path(folder)}: no finished arm to collect (run without --collect first)")
    return json.loads(path.read_text())


def _qat_only(student: Path, teacher: Path, folder: Path, seed: int, log: Any) -> Path:
    """Ratio 0: the unpruned student with the recipe's quantization-aware epochs, nothing pruned."""
    from distill.prune import qat_checkpoint
    from recipes.schema import load_recipe

    if (folder / "qat.pt").is_file():
        return folder / "qat.pt"
    recipe = load_recipe(RECIPE)
    path, _ = qat_checkpoint(student, recipe.prune_config(), data=recipe.data.spec("train"),
                             teacher_checkpoint=teacher, out=folder, seed=seed, progress=False,
                             log=lambda line: log(f"  {line}"))
    return path


def validation_set(metadata: Any, seed: int) -> Any:
    """The recipe's validation split for ``seed`` (the training folders' held-out photos: which ones
    depends on the seed), cropped for ``metadata``."""
    from landmarks.data import open_dataset
    from landmarks.data.split import Holdout
    from recipes.schema import load_recipe

    recipe = load_recipe(RECIPE)
    return open_dataset(recipe.data.spec("train"), input_size=metadata.input_size, crop_scale=metadata.crop_scale,
                        augment=None, seed=seed, holdout=Holdout(recipe.data.val_split, "val", seed))


def run_seed(recipe_run: Path) -> int:
    """The seed the distilled student was trained with (its split of validation photos follows it)."""
    manifest = recipe_run / "manifest.json"
    if not manifest.is_file():
        raise ConfigError(f"{manifest}: not a finished recipe run")
    return int(json.loads(manifest.read_text())["recipe"]["config"]["seed"])


def rows_of(ratio: str, manifest: dict[str, Any], run: Path, val: Any) -> list[dict[str, Any]]:
    from distill.prune import measure
    from landmarks.evaluate import Evaluator
    from landmarks.models import load_checkpoint
    from landmarks.runtimes import load_predictor

    evaluator = Evaluator(val, name="validation")
    refs = manifest["references"]
    chain_ref = refs.get("student_unpruned", refs["torch_fp32"])
    student_path = run / refs["torch_fp32"]["checkpoint"]
    model = load_checkpoint(student_path).build()
    footprint = measure(model, model.config.input_size)
    files = {("torch", "fp32"): student_path}
    rows = []
    for fmt, precision in FORMATS:
        entry = next((a for a in manifest["artifacts"] if a["name"] == ARTIFACT.get((fmt, precision))), None)
        path = files.get((fmt, precision)) or run / entry["file"]
        test = refs["torch_fp32"]["nme_io"] if entry is None else entry["nme_io"]
        rows.append({
            "ratio": ratio, "format": fmt, "precision": precision, "params": footprint.params, "macs": footprint.macs,
            "bytes": footprint.fp32_bytes if entry is None else entry["bytes"], "file": str(path),
            "val_nme_io": evaluator.nme(load_predictor(path, num_threads=2)), "test_nme_io": test,
            "chain_regression": (test - chain_ref["nme_io"]) / chain_ref["nme_io"],
            "verdict": refs["torch_fp32"].get("verdict", "pass") if entry is None else entry["verdict"],
        })
    return rows


def add_latency(rows: list[dict[str, Any]], input_size: int) -> None:
    """Every ONNX / TFLite file timed in one process, interleaved, batch 1, 1 thread."""
    from quant.latency import measure

    timed = [r for r in rows if r["format"] != "torch"]
    for row, timing in zip(timed, measure([r["file"] for r in timed], threads=1, input_size=input_size), strict=True):
        row["latency_ms"] = round(timing.median_ms, 4)
    for row in rows:
        row.setdefault("latency_ms", None)


def table(rows: list[dict[str, Any]], cpu: str, source: str) -> str:
    lines = [
        "# Pruning: the accuracy / size / speed front",
        "",
        f"From the distilled student of `{source}`, each ratio made as `recipes/300w_pfld025.yaml` makes what it "
        "ships (KD recovery, quantization-aware epochs, export, INT8, gate). nme_io in percent: validation = 10 % "
        "of the training folders' photos (where choices are made), test = 300-W common (554 faces). Chain: test "
        f"nme_io against the unpruned distilled student. Latency: batch 1, 1 thread, all files timed side by side "
        f"in one process. CPU: {cpu}.",
        "",
        "| ratio | format | params | MACs | size | latency | val nme_io | test nme_io | chain | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        latency = f"{r['latency_ms']:.3f} ms" if r.get("latency_ms") else "-"
        lines.append(f"| {r['ratio']} | {r['format']} {r['precision']} | {r['params']:,} | {r['macs'] / 1e6:.1f} M | "
                     f"{r['bytes'] / 1024:.0f} KB | {latency} | {r['val_nme_io']:.2f} | {r['test_nme_io']:.2f} | "
                     f"{100 * r['chain_regression']:+.1f} % | {r['verdict']} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, shipped: str | None = None) -> None:
    """Test nme_io against file size, one line per format; the shipped ratio starred."""
    from matplotlib.figure import Figure

    from landmarks.atomic import atomic_path

    fig = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    for fmt, precision in FORMATS:
        points = sorted((r for r in rows if (r["format"], r["precision"]) == (fmt, precision)),
                        key=lambda r: r["bytes"])
        xs, ys = [r["bytes"] / 1024 for r in points], [r["test_nme_io"] for r in points]
        ax.plot(xs, ys, marker="o", label=f"{fmt} {precision}")
        for r, x, y in zip(points, xs, ys, strict=True):
            ax.annotate(str(r["ratio"]), (x, y), textcoords="offset points", xytext=(3, 3), fontsize="x-small")
            if shipped is not None and str(r["ratio"]) == shipped and fmt != "torch":
                ax.plot([x], [y], marker="*", markersize=14, color="black", linestyle="none")
    ax.set_xscale("log")
    ax.set(xlabel="file size (KB, log scale)", ylabel="300-W common nme_io (%)",
           title="Prune ratio: accuracy against size (labels: ratio; star: shipped)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize="small")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe-run", type=Path, required=True, help="a finished 300-W recipe run (its student, teacher)")
    p.add_argument("--ratios", nargs="+", default=["0", "0.15", "0.3", "0.45"], help="prune ratios; 'auto' allowed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra recipe overrides for every arm (e.g. prune.budget=0.03 for auto)")
    p.add_argument("--shipped", default=None, help="the ratio the recipe ships, starred in the plot")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "pareto")
    p.add_argument("--name", default="pareto")
    p.add_argument("--collect", action="store_true",
                   help="run nothing: measure the arms already made under --work/--name (e.g. by another checkout)")
    args = p.parse_args(argv)
    with cli_errors("benchmarks/pareto.py"):
        from landmarks.models import load_checkpoint

        seed = run_seed(args.recipe_run)
        metadata = load_checkpoint(args.recipe_run / "checkpoints" / "student.pt").metadata
        val, input_size = validation_set(metadata, seed), metadata.input_size
        rows = []
        for ratio in args.ratios:
            folder = args.work / args.name / f"ratio_{ratio}"
            manifest = (finished_manifest(folder) if args.collect else
                        arm(ratio, args.recipe_run, folder, seed, args.overrides))
            rows += rows_of(ratio, manifest, folder / "run", val)
        add_latency(rows, input_size)
        for row in rows:
            row["file"] = shown_path(row["file"])
        cpu = cpu_name()
        source = shown_path(args.recipe_run)
        command = " ".join(["python benchmarks/pareto.py --recipe-run", source,
                            *(f"--set {item}" for item in args.overrides)])
        save_results(RESULTS, args.name, {"cpu": cpu, "recipe_run": source, "seed": seed,
                                          "overrides": args.overrides, "rows": rows},
                     table(rows, cpu, source), command=command)
        plot(rows, RESULTS / f"{args.name}.png", args.shipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
