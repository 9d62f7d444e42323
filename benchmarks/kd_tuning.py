"""Choose the student's KD weights and learning rate on the validation split, never on the test set.

Each setting trains the 300-W recipe's student (pfld025) from the recipe's teacher for the same short
budget and is judged by its validation nme_io (10 % of the training folders' source photos,
:mod:`landmarks.data.split`); the 300-W common test set is not read here. One axis moves at a time
from the recipe's earlier setting (``base``), then the best value of each axis is tried together.

    python benchmarks/kd_tuning.py --recipe-run runs/300w_recipe --epochs 16

Settings are resumable: a finished one leaves ``setting.json`` in its folder and is skipped; the
table holds every finished setting of the same epoch budget.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import cpu_name, save_results  # noqa: E402
from benchmarks.distill_gap import RESULTS, SHARED, base_config, run_once  # noqa: E402
from landmarks.errors import cli_errors  # noqa: E402


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: KD loss weights and the student's peak learning rate."""

    name: str
    gt_weight: float = 1.0
    output_weight: float = 1.0
    feature_weight: float = 2.0
    lr: float = 2e-3
    loss: str = "pfld"


SETTINGS = (
    Setting("lr_4e-3", lr=4e-3),
    Setting("lr_8e-3", lr=8e-3),
    Setting("output_2", output_weight=2.0),
    Setting("feature_0", feature_weight=0.0),
    Setting("feature_4", feature_weight=4.0),
    Setting("feature_8", feature_weight=8.0),
    Setting("base"),
    Setting("loss_wing", loss="wing"),
    # the best value of each axis above, together
    Setting("lr_8e-3_feature_8", lr=8e-3, feature_weight=8.0),
    Setting("lr_8e-3_feature_8_wing", lr=8e-3, feature_weight=8.0, loss="wing"),
    # further from the chosen point, after the 120-epoch KD gain fell short of 10 %
    Setting("lr_8e-3_feature_16", lr=8e-3, feature_weight=16.0),
    Setting("lr_8e-3_feature_32", lr=8e-3, feature_weight=32.0),
    Setting("lr_8e-3_feature_8_output_2", lr=8e-3, feature_weight=8.0, output_weight=2.0),
)


def setting_config(base: Any, setting: Setting, epochs: int, out: Path) -> Any:
    train = replace(base.student.train, epochs=epochs, lr=setting.lr)
    kd = replace(base.kd, gt_weight=setting.gt_weight, output_weight=setting.output_weight,
                 feature_weight=setting.feature_weight)
    return replace(base, out=str(out), kd=kd, student=replace(base.student, train=train, loss=setting.loss))


def run_setting(setting: Setting, cfg: Any) -> dict[str, Any]:
    def row(result: Any, wall_seconds: float) -> dict[str, Any]:
        return {**setting.__dict__, "epochs": cfg.student.train.epochs,
                "val_nme_io": result.metrics["student"]["nme_io"], "wall_seconds": wall_seconds}

    done = run_once(cfg, Path(cfg.out) / "setting.json", row)
    print(f"[setting] {setting.name}: val {done['val_nme_io']:.3f} %")
    return done


def _table(rows: list[dict[str, Any]], epochs: int) -> str:
    best = min(rows, key=lambda r: r["val_nme_io"])
    lines = [
        f"# Student KD weights and learning rate, chosen on validation ({epochs} epochs each)",
        "",
        "Validation: 10 % of the 300-W training folders' source photos (209 faces). "
        "The test set is not read by this sweep.",
        "",
        "| setting | gt | output | feature | lr | loss | val nme_io % |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['name']}{' (best)' if r is best else ''} | {r['gt_weight']:g} | {r['output_weight']:g} | "
          f"{r['feature_weight']:g} | {r['lr']:g} | {r.get('loss', 'pfld')} | {r['val_nme_io']:.3f} |"
          for r in rows],
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe-run", type=Path, default=Path("runs/300w_recipe"), help="run folder with the teacher")
    p.add_argument("--out", type=Path, default=Path("runs/kd_tuning"), help="one folder per setting")
    p.add_argument("--epochs", type=int, default=16, help="student epochs of every setting")
    p.add_argument("--only", choices=[s.name for s in SETTINGS], action="append", help="run these only")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    with cli_errors("kd_tuning"):
        if not (SHARED / "300w").is_dir():
            print(f"no 300-W data at {SHARED / '300w'}; nothing to do")
            return 0
        base = base_config(args.recipe_run, args.out, args.progress)
        for setting in SETTINGS:
            if not args.only or setting.name in args.only:
                run_setting(setting, setting_config(base, setting, args.epochs, args.out / setting.name))
        done = [args.out / s.name / "setting.json" for s in SETTINGS]
        rows = [json.loads(p.read_text()) for p in done if p.is_file()]
        rows = [r for r in rows if r["epochs"] == args.epochs]
        payload = {"epochs": args.epochs, "settings": rows, "best": min(rows, key=lambda r: r["val_nme_io"])["name"],
                   "cpu": cpu_name()}
        save_results(RESULTS, "kd_tuning", payload, _table(rows, args.epochs),
                     command=f"python benchmarks/kd_tuning.py --epochs {args.epochs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
