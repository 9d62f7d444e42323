"""The distillation gap on 300-W: teacher, KD student, the same student without KD, the
release artifacts of the recipe, and the unlabeled-data arms; one JSON and one table.

Every choice is made on the validation split (10 % of the training folders' source photos,
:mod:`landmarks.data.split`); the 300-W common test set (554 faces) is evaluated once per
finished model, for the table. Arms reuse the recipe's teacher and are resumable.

    python -m recipes run recipes/300w_pfld025.yaml --out runs/300w_recipe   # teacher, KD student, artifacts
    python benchmarks/distill_gap.py arms --recipe-run runs/300w_recipe         # the other arms
    python benchmarks/distill_gap.py collect --recipe-run runs/300w_recipe --recipe-wall-s 3600

Arms (student pfld025, the recipe's hyperparameters, the same optimizer steps each as the
recipe's KD student); an arm whose exact config the recipe's student was trained with is that
student, and ``--adopt ARM=RUN`` takes one from another finished run folder of its config:
* ``no_kd``: 300-W only, no teacher (the KD gain is measured against it); skipped when the
  recipe trained it itself (``student.baseline: true``);
* ``kd``: 300-W only, with the teacher;
* ``kd_unlabeled``: plus YouTube frames as unlabeled faces (``--unlabeled-ratio`` of each batch),
  which the teacher labels on every view;
* ``kd_noisy_labels``: plus the same frames with their machine-made labels as extra training data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_name, save_results, shown_path  # noqa: E402
from landmarks.atomic import write_json  # noqa: E402
from landmarks.data.specs import data_root  # noqa: E402
from landmarks.errors import ConfigError, cli_errors  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SHARED = data_root()
RECIPE = ROOT / "recipes" / "300w_pfld025.yaml"
TEST = ("300w/helen/testset", "300w/lfpw/testset")
YOUTUBE = "youtube_faces"
ARMS = ("no_kd", "kd", "kd_unlabeled", "kd_noisy_labels")


def recipe_config(out: Path, progress: bool) -> Any:
    from recipes.schema import load_recipe

    return load_recipe(RECIPE).distill_config(out, progress)


def base_config(recipe_run: Path, out: Path, progress: bool) -> Any:
    """The recipe's KD student on 300-W only (no unlabeled faces) at the recipe's budget of
    optimizer steps, distilled from the recipe run's teacher."""
    from recipes.stages import baseline_config

    cfg = recipe_config(out, progress)
    teacher = recipe_run / "checkpoints" / "teacher.pt"
    if not teacher.is_file():
        raise ConfigError(f"{teacher}: run the recipe first (python -m recipes run {RECIPE.relative_to(ROOT)})")
    labeled_only = baseline_config(cfg, out)
    return replace(labeled_only, teacher=replace(cfg.teacher, checkpoint=str(teacher)))


def arm_config(name: str, base: Any, out: Path, unlabeled_ratio: float = 0.3) -> tuple[Any, bool]:
    """(config, no_kd) of one arm; every arm has the optimizer steps of ``base``."""
    student, data = base.student, base.data
    train = student.train
    if name in ("no_kd", "kd"):
        return replace(base, out=str(out)), name == "no_kd"
    if name == "kd_unlabeled":
        epochs = max(1, round(train.epochs * (1 - unlabeled_ratio)))
        data = replace(data, unlabeled=str(SHARED / YOUTUBE), unlabeled_ratio=unlabeled_ratio)
    else:
        labeled, youtube = _count(data.train, data.val_split), _count(str(SHARED / YOUTUBE), 0.0)
        epochs = max(1, round(train.epochs * labeled / (labeled + youtube)))
        data = replace(data, extra_train=str(SHARED / YOUTUBE))
    student = replace(student, train=replace(train, epochs=epochs))
    return replace(base, out=str(out), data=data, student=student), False


def same_student_config(a: Any, b: Any) -> bool:
    """Whether two distill configs train the same student: data, student, KD weights and seed. The
    teacher is not compared (an adopted run may have had another one); each arm's row names it."""
    def folders(spec: str | None) -> list[str] | None:
        return None if spec is None else [str(Path(p).resolve()) if Path(p).exists() else p for p in spec.split(",")]

    def key(cfg: dict[str, Any]) -> dict[str, Any]:
        data = {k: folders(v) if k in ("train", "val", "unlabeled", "extra_train") else v
                for k, v in cfg["data"].items()}
        return {"data": data, **{k: cfg[k] for k in ("student", "kd", "seed")}}
    return key(a.to_dict() if hasattr(a, "to_dict") else a) == key(b.to_dict() if hasattr(b, "to_dict") else b)


def _count(spec: str, val_split: float) -> int:
    """Faces on the training side of the split (read from the annotation files, nothing decoded)."""
    from landmarks.data import open_dataset
    from landmarks.data.split import Holdout

    holdout = Holdout(val_split, "train") if val_split > 0 else None
    return len(open_dataset(spec, input_size=112, holdout=holdout))


def test_nme(checkpoint: Path) -> float:
    """nme_io (percent) of a checkpoint on the 300-W common test set."""
    from landmarks.evaluate import evaluate
    from landmarks.runtimes import load_predictor

    spec = ",".join(str(SHARED / t) for t in TEST)
    return float(evaluate(load_predictor(checkpoint), spec, batch_size=64, progress=False).metrics.nme_io)


def run_once(cfg: Any, done: Path, row: Callable[[Any, float], dict[str, Any]], no_kd: bool = False) -> dict[str, Any]:
    """One distillation into ``cfg.out``, resumable: a finished run leaves ``done`` (the JSON row
    that ``row(result, wall_seconds)`` builds) and is not trained again."""
    from distill.pipeline import run_distillation

    if done.is_file():
        print(f"[skip] {done} exists")
        return json.loads(done.read_text())
    started = time.perf_counter()
    result = run_distillation(cfg, resume=any(Path(cfg.out).glob("*.state.pt")), no_kd=no_kd)
    payload = row(result, round(time.perf_counter() - started, 1))
    write_json(done, payload)
    return payload


def _arm_row(name: str, cfg: Any, student_path: Path, metrics: dict[str, Any], wall_seconds: float | None,
             source: str) -> dict[str, Any]:
    return {
        "arm": name,
        "epochs": cfg.student.train.epochs,
        "val_nme_io": metrics["student"]["nme_io"],
        "test_nme_io": test_nme(student_path),
        "train_seconds": metrics["student"]["train_seconds"],
        "wall_seconds": wall_seconds,
        "unlabeled": cfg.data.unlabeled,
        "unlabeled_ratio": cfg.data.unlabeled_ratio if cfg.data.unlabeled else None,
        "extra_train": cfg.data.extra_train,
        "feature_weight": cfg.kd.feature_weight,
        "teacher": metrics.get("teacher", {}).get("arch"),
        "from": source,
    }


def run_arm(name: str, cfg: Any, no_kd: bool) -> dict[str, Any]:
    def row(result: Any, wall_seconds: float) -> dict[str, Any]:
        return _arm_row(name, cfg, result.student_path, result.metrics, wall_seconds, "`distill_gap.py arms`")

    arm = run_once(cfg, Path(cfg.out) / "arm.json", row, no_kd=no_kd)
    print(f"[arm] {name}: val {arm['val_nme_io']:.2f} %, test {arm['test_nme_io']:.2f} %")
    return arm


def _arm_source(item: str) -> tuple[str, Path]:
    name, sep, run = item.partition("=")
    if not sep or name not in ARMS:
        raise ConfigError(f"--adopt {item!r}: expected ARM=RUN with ARM one of {', '.join(ARMS)}")
    return name, Path(run)


def _trained_with(run: Path, cfg: Any) -> bool:
    """Whether ``run`` holds a finished student trained with ``cfg``'s student config."""
    from landmarks.models.checkpoint import load_checkpoint

    if not ((run / "student.pt").is_file() and (run / "metrics.json").is_file()):
        return False
    return same_student_config(load_checkpoint(run / "student.pt").extra.get("config") or {}, cfg)


def adopt_run(name: str, cfg: Any, run: Path, source: str) -> dict[str, Any]:
    """An arm from a finished run folder (``student.pt`` + ``metrics.json``) trained with ``cfg``'s
    student config; refused when the configs differ."""
    if not _trained_with(run, cfg):
        raise ConfigError(f"{run}: no finished student trained with arm {name}'s config "
                          "(student.pt with that config, and metrics.json)")
    arm = _arm_row(name, cfg, run / "student.pt", json.loads((run / "metrics.json").read_text()), None, source)
    write_json(Path(cfg.out) / "arm.json", arm)
    print(f"[arm] {name} from {run}: val {arm['val_nme_io']:.2f} %, test {arm['test_nme_io']:.2f} %")
    return arm


def collect(recipe_run: Path, arms_dir: Path, recipe_wall_s: float | None, wall_note: str = "",
            name: str = "distill_gap") -> dict[str, Any]:
    manifest = json.loads((recipe_run / "manifest.json").read_text())
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    distill_metrics = json.loads((recipe_run / "checkpoints" / "metrics.json").read_text())
    student_kd = test_nme(recipe_run / "checkpoints" / "student.pt")
    teacher = float(manifest["references"]["teacher"]["nme_io"])
    arms = {p.parent.name: json.loads(p.read_text()) for p in sorted(arms_dir.glob("*/arm.json"))}
    throughput = _throughput()
    no_kd_source, no_kd_path = _no_kd_student(recipe_run, arms_dir)
    no_kd = test_nme(no_kd_path) if no_kd_path is not None else None
    no_kd_val = (json.loads((no_kd_path.parent / "metrics.json").read_text())["student"]["nme_io"]
                 if no_kd_path is not None else None)
    tuning = RESULTS / "kd_tuning.json"
    payload = {
        "test_set": "300-W common (helen/testset + lfpw/testset), 554 faces; nme_io percent (outer eye corners)",
        "validation_split": "10 % of the 300-W training folders' source photos (helen/trainset, lfpw/trainset, "
                            "afw; file name without its trailing face number, hashed with seed 0): 209 faces, "
                            "never trained on; every epoch's log, the KD weights and learning rate "
                            "(benchmarks/kd_tuning.py), the arms and the prune schedule were judged on it",
        "kd_tuning": json.loads(tuning.read_text()) if tuning.is_file() else None,
        "teacher_arch": distill_metrics["teacher"]["arch"],
        "teacher_label": _teacher_label(manifest),
        "teacher_nme_io": teacher,
        "teacher_val_nme_io": distill_metrics["teacher"]["nme_io"],
        "student_kd_nme_io": student_kd,
        "student_kd_val_nme_io": distill_metrics["student"]["nme_io"],
        "student_no_kd_nme_io": no_kd,
        "student_no_kd_val_nme_io": no_kd_val,
        "student_no_kd_from": no_kd_source,
        "kd_relative_gain": (no_kd - student_kd) / no_kd if no_kd else None,
        "student_teacher_ratio": student_kd / teacher,
        "student_pruned_nme_io": float(manifest["references"]["torch_fp32"]["nme_io"]),
        "student_pruned_label": _pruned_label(recipe_run),
        "student_int8_onnx_nme_io": artifacts.get("onnx_int8", {}).get("nme_io"),
        "student_int8_tflite_nme_io": artifacts.get("tflite_int8", {}).get("nme_io"),
        "int8_onnx_bytes": artifacts.get("onnx_int8", {}).get("bytes"),
        "int8_tflite_bytes": artifacts.get("tflite_int8", {}).get("bytes"),
        "train_images_per_s_before": throughput["before"],
        "train_images_per_s_after": throughput["after"],
        "train_images_per_s_from": throughput["from"],
        "train_images_per_s_reconstructed": throughput.get("reconstructed"),
        "recipe_wall_s": recipe_wall_s if recipe_wall_s is not None else manifest.get("wall_seconds"),
        "recipe_wall_note": wall_note,
        "recipe_git_commit": manifest.get("git_commit"),
        "checkpoints": {"teacher": shown_path(recipe_run / "checkpoints" / "teacher.pt"),
                        "student_kd": shown_path(recipe_run / "checkpoints" / "student.pt"),
                        "student_nokd": shown_path(no_kd_path) if no_kd_path is not None else None,
                        "pruned": shown_path(recipe_run / "checkpoints" / "prune" / "pruned.pt")},
        "unlabeled_arms": {k: {"val_nme_io": v["val_nme_io"], "test_nme_io": v["test_nme_io"],
                               "epochs": v["epochs"], "feature_weight": v.get("feature_weight"),
                               "teacher": v.get("teacher"), "from": v.get("from", "`distill_gap.py arms`")}
                           for k, v in arms.items() if k != "no_kd"},
        "cpu": cpu_name(),
    }
    payload["int8_verdicts"] = {k: artifacts.get(k, {}).get("verdict") for k in ("onnx_int8", "tflite_int8")}
    save_results(RESULTS, name, payload, _table(payload))
    return payload


def _throughput() -> dict[str, Any]:
    """Student + KD images/s before and after: the two checkouts side by side when that benchmark
    ran (train_throughput_commits.py), else the old data path rebuilt in today's code."""
    rebuilt = json.loads((RESULTS / "train_throughput.json").read_text())["images_per_s"]["student_kd"]
    rebuilt = {"before": rebuilt["before"], "after": rebuilt["after"],
               "from": "benchmarks/results/train_throughput.md (old data path rebuilt in today's code)"}
    commits = RESULTS / "train_throughput_commits.json"
    if not commits.is_file():
        return rebuilt
    best = json.loads(commits.read_text())
    return {"before": best["best"]["before"]["student_kd"], "after": best["best"]["after"]["student_kd"],
            "from": f"benchmarks/results/train_throughput_commits.md (commit {best['before_commit'][:7]} against "
                    f"{best['after_commit'][:7]}, each checkout's own distill CLI)",
            "reconstructed": rebuilt}


def _teacher_label(manifest: dict[str, Any]) -> str:
    """``fan2, width 64, 128 px``: the recipe's teacher, as its manifest records it."""
    teacher = manifest["recipe"]["config"]["teacher"]
    return f"{teacher['arch']}, width {teacher['width']}, {teacher['input_size']} px"


def _pruned_label(recipe_run: Path) -> str:
    """What the exported student went through after distillation, from its prune report."""
    report = json.loads((recipe_run / "checkpoints" / "prune" / "prune_report.json").read_text())
    qat = report.get("qat")
    label = f"student, {100 * report['target'][1]:.0f} % pruned + KD recovery"
    return label + (f" + {qat['epochs']} quantization-aware epochs" if qat else "")


def _no_kd_student(recipe_run: Path, arms_dir: Path) -> tuple[str | None, Path | None]:
    """The same-budget student without KD: the recipe's own (``student.baseline``), else the arm."""
    for source, path in (("recipe (student.baseline)", recipe_run / "checkpoints" / "no_kd" / "student.pt"),
                         ("`distill_gap.py arms`", arms_dir / "no_kd" / "student.pt")):
        if path.is_file():
            return source, path
    return None, None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _table(p: dict[str, Any]) -> str:
    gain = p["kd_relative_gain"]
    lines = [
        "# The distillation gap on 300-W (2 CPU cores)",
        "",
        f"Test: {p['test_set']}. Validation: {p['validation_split']}.",
        "",
        "| model | val nme_io % | test nme_io % | from |",
        "|---|---|---|---|",
        f"| teacher {p['teacher_arch']} | {_pct(p['teacher_val_nme_io'])} | "
        f"{_pct(p['teacher_nme_io'])} | recipe |",
        f"| student pfld025, KD | {_pct(p['student_kd_val_nme_io'])} | {_pct(p['student_kd_nme_io'])} | recipe |",
        f"| student pfld025, no KD (same budget) | {_pct(p['student_no_kd_val_nme_io'])} | "
        f"{_pct(p['student_no_kd_nme_io'])} | {p['student_no_kd_from'] or '–'} |",
        f"| {p.get('student_pruned_label', 'student, 30 % pruned + KD recovery')} | | "
        f"{_pct(p['student_pruned_nme_io'])} | recipe |",
        f"| INT8 ONNX ({(p['int8_onnx_bytes'] or 0) / 1024:.0f} KB) | | {_pct(p['student_int8_onnx_nme_io'])} "
        f"| recipe, gate {p['int8_verdicts']['onnx_int8']} |",
        f"| INT8 TFLite ({(p['int8_tflite_bytes'] or 0) / 1024:.0f} KB) | | "
        f"{_pct(p['student_int8_tflite_nme_io'])} | recipe, gate {p['int8_verdicts']['tflite_int8']} |",
        "",
        f"Student / teacher: {p['student_teacher_ratio']:.2f}. "
        + (f"KD gain over no KD: {100 * gain:.1f} %. " if gain is not None else "")
        + f"Training throughput (student + KD): {p['train_images_per_s_before']:.0f} -> "
        f"{p['train_images_per_s_after']:.0f} images/s ({p['train_images_per_s_from']}). "
        + (f"Recipe from scratch: {p['recipe_wall_s'] / 60:.0f} min" if p["recipe_wall_s"] else "")
        + (f" ({p['recipe_wall_note']})." if p.get("recipe_wall_note") else "."),
        "",
        "## Unlabeled faces (the same optimizer steps per arm; the recipe's hyperparameters but the feature KD "
        "weight and the teacher, which the columns name)",
        "",
        "| arm | student epochs | teacher | feature KD weight | val nme_io % | test nme_io % | from |",
        "|---|---|---|---|---|---|---|",
        *[f"| {k} | {v['epochs']} | {v.get('teacher') or '–'} | {v.get('feature_weight') or '–'} | "
          f"{_pct(v['val_nme_io'])} | {_pct(v['test_nme_io'])} | {v.get('from', '')} |"
          for k, v in p["unlabeled_arms"].items()],
        "",
        *_tuning_lines(p.get("kd_tuning")),
        "Commands: `python -m recipes run recipes/300w_pfld025.yaml --out runs/300w_recipe`, then "
        "`python benchmarks/distill_gap.py arms` and `python benchmarks/distill_gap.py collect`.",
        "",
    ]
    return "\n".join(lines)


def _tuning_lines(tuning: dict[str, Any] | None) -> list[str]:
    if not tuning:
        return []
    rows = [f"| {r['name']} | {r['gt_weight']:g} / {r['output_weight']:g} / {r['feature_weight']:g} | {r['lr']:g} "
            f"| {r.get('loss', 'pfld')} | {r['val_nme_io']:.2f} |" for r in tuning["settings"]]
    return ["## KD weights and learning rate (validation only, "
            f"{tuning['epochs']} epochs each; `benchmarks/kd_tuning.py`)",
            "", "| setting | gt / output / feature | lr | loss | val nme_io % |", "|---|---|---|---|---|", *rows,
            "", f"Chosen: {tuning['best']}.", ""]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("arms", "collect"))
    p.add_argument("--recipe-run", type=Path, default=Path("runs/300w_recipe"))
    p.add_argument("--out", type=Path, default=Path("runs/distill_gap"), help="arm run folders")
    p.add_argument("--only", choices=ARMS, action="append", help="run these arms only (repeatable)")
    p.add_argument("--adopt", action="append", metavar="ARM=RUN",
                   help="take arm ARM from the finished run folder RUN (trained with that arm's exact config) "
                        "instead of training it; repeatable")
    p.add_argument("--feature-weight", type=float, default=None,
                   help="the arms' feature KD weight (default: the recipe's)")
    p.add_argument("--unlabeled-ratio", type=float, default=0.3, help="share of unlabeled faces of kd_unlabeled")
    p.add_argument("--recipe-wall-s", type=float, default=None, help="wall time of the from-scratch recipe run")
    p.add_argument("--recipe-wall-note", default="", help="how that wall time was measured")
    p.add_argument("--name", default="distill_gap", help="results file stem of collect")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    with cli_errors("distill_gap"):
        if not (SHARED / "300w").is_dir():
            print(f"no 300-W data at {SHARED / '300w'}; nothing to do")
            return 0
        if args.command == "collect":
            collect(args.recipe_run, args.out, args.recipe_wall_s, args.recipe_wall_note, args.name)
            return 0
        base = base_config(args.recipe_run, args.out, args.progress)
        if args.feature_weight is not None:
            base = replace(base, kd=replace(base.kd, feature_weight=args.feature_weight))
        adopted = dict(_arm_source(item) for item in args.adopt or [])
        recipe_student = args.recipe_run / "checkpoints"
        for name in args.only or ARMS:
            if name == "no_kd" and _no_kd_student(args.recipe_run, args.out)[0] == "recipe (student.baseline)":
                print("[skip] no_kd: the recipe trained it (student.baseline)")
                continue
            cfg, no_kd = arm_config(name, base, args.out / name, args.unlabeled_ratio)
            if name in adopted:
                adopt_run(name, cfg, adopted[name], f"adopted from {shown_path(adopted[name])}")
            elif not no_kd and _trained_with(recipe_student, cfg):
                adopt_run(name, cfg, recipe_student, "recipe")
            else:
                run_arm(name, cfg, no_kd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
