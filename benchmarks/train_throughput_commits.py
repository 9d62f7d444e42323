"""Training throughput of two checkouts side by side: the code as it was and the code as it is.

``train_throughput.py`` rebuilds the old data path inside today's code; this script runs each
checkout's own ``python -m distill`` (its own defaults, loader and loss code) on the same faces,
alternating the two so that both see the same machine, and reads images/s from each run's
``teacher_log.csv`` / ``student_log.csv`` (the training loop only; image decoding into the cache,
validation and start-up are in the process wall time, reported beside it).

    git worktree add ../before caf6905
    python benchmarks/train_throughput_commits.py --before ../before \\
        --data $LANDMARKS_DATA/300w/helen/trainset --val-data $LANDMARKS_DATA/300w/lfpw/testset
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_name, save_results  # noqa: E402
from landmarks.errors import ConfigError, cli_errors  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _commit(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def _rate(log: Path) -> float:
    with log.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ConfigError(f"{log}: no epoch rows")
    return max(float(r["images_per_s"]) for r in rows)


def run_tree(tree: Path, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """One run of ``tree``'s distill CLI: teacher and student for ``args.epochs`` epochs each."""
    cmd = [sys.executable, "-m", "distill", "--data", args.data, "--val-data", args.val_data,
           "--teacher-epochs", str(args.epochs), "--epochs", str(args.epochs), "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise ConfigError(f"{tree}: distill exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return {"teacher": _rate(out / "teacher_log.csv"), "student_kd": _rate(out / "student_log.csv"),
            "wall_s": round(wall, 1)}


def measure(before: Path, after: Path, args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="throughput_commits_") as tmp:
        for repeat in range(args.repeats):
            for label, tree in (("before", before), ("after", after)):
                row = run_tree(tree, args, Path(tmp) / f"{label}_{repeat}")
                print(f"[{label} {repeat + 1}/{args.repeats}] teacher {row['teacher']:.1f}  "
                      f"student+KD {row['student_kd']:.1f} img/s  wall {row['wall_s']:.0f} s")
                runs[label].append(row)
    best = {label: {k: max(r[k] for r in rows) if k != "wall_s" else min(r[k] for r in rows) for k in rows[0]}
            for label, rows in runs.items()}
    return {
        "before_commit": _commit(before), "after_commit": _commit(after),
        "data": args.data, "val_data": args.val_data, "epochs": args.epochs, "repeats": args.repeats,
        "threads": args.threads, "runs": runs, "best": best,
        "speedup": {k: best["after"][k] / best["before"][k] for k in ("teacher", "student_kd")},
        "cpu": cpu_name(),
    }


def _table(p: dict[str, Any]) -> str:
    b, a = p["best"]["before"], p["best"]["after"]
    return "\n".join([
        "# Training throughput, two checkouts side by side",
        "",
        f"{p['cpu']}, {p['threads']} threads; each checkout's own `python -m distill` with its defaults, "
        f"{p['epochs']} teacher + {p['epochs']} student epoch(s) on `{p['data']}`, alternated, best of "
        f"{p['repeats']}. images/s of the training loop (from each run's log); wall: the whole process.",
        "",
        f"| | before `{p['before_commit']}` | after `{p['after_commit']}` | speed-up |",
        "|---|---|---|---|",
        f"| teacher (images/s) | {b['teacher']:.1f} | {a['teacher']:.1f} | x{p['speedup']['teacher']:.2f} |",
        f"| student + KD (images/s) | {b['student_kd']:.1f} | {a['student_kd']:.1f} | "
        f"x{p['speedup']['student_kd']:.2f} |",
        f"| process wall (s) | {b['wall_s']:.0f} | {a['wall_s']:.0f} | x{b['wall_s'] / a['wall_s']:.2f} |",
    ])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="source tree of the old code (a git worktree)")
    p.add_argument("--after", type=Path, default=ROOT, help="source tree of the new code (default: this one)")
    p.add_argument("--data", required=True, help="training faces, as --data of python -m distill")
    p.add_argument("--val-data", required=True, help="validation faces (kept small: it is not timed)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", default="train_throughput_commits", help="results file stem")
    args = p.parse_args()
    with cli_errors("train_throughput_commits"):
        for tree in (args.before, args.after):
            if not (tree / "distill" / "__main__.py").is_file():
                raise ConfigError(f"{tree}: not a checkout of this project (no distill/__main__.py)")
        payload = measure(args.before.resolve(), args.after.resolve(), args)
        command = " ".join(["python benchmarks/train_throughput_commits.py", *sys.argv[1:]])
        save_results(RESULTS, args.name, payload, _table(payload), command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
