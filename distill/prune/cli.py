"""``python -m distill.prune``: parse arguments, call :func:`distill.prune.prune_checkpoint`, print steps."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from distill.prune.config import IMPORTANCES, PruneConfig
from distill.prune.run import prune_checkpoint, qat_line, step_line
from landmarks.cli import (
    add_data,
    add_device,
    add_out,
    add_progress,
    add_seed,
    check_output_dir,
    new_parser,
    show_progress,
)
from landmarks.errors import cli_errors

PROG = "python -m distill.prune"


def _count(text: str) -> int:
    """``250000``, ``250k``, ``1.5M``, ``2G`` -> an integer count."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1.0)
    number = text[:-1] if scale != 1.0 else text
    try:
        return round(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (e.g. 250000, 250k, 1.5M)") from None


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(
        PROG,
        "Structured channel pruning of a PFLD student checkpoint (Torch-Pruning, DepGraph), "
        "fine-tuned after each step with knowledge distillation from a FAN teacher (--teacher) or on the "
        "ground truth alone. Writes OUT/pruned.pt, a plain checkpoint loadable without Torch-Pruning.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", help="PFLD student checkpoint (python -m distill's student.pt)")
    target = p.add_argument_group("target (exactly one)")
    target.add_argument("--ratio", type=float, help="fraction of inference parameters to remove, in (0, 1)")
    target.add_argument("--channel-ratio", type=float, help="fraction of channels removed per pruned layer")
    target.add_argument("--params-budget", type=_count, help="inference parameters to end at, e.g. 200k")
    target.add_argument("--flops-budget", type=_count, help="inference MACs to end at, e.g. 40M")
    p.add_argument("--budget", type=float, default=None, metavar="FRACTION",
                   help="accuracy-aware: keep the last step whose recovered validation nme_io stays within this "
                        "relative rise of the unpruned student's (e.g. 0.03); exit 1 if the first step does not")
    p.add_argument("--importance", choices=IMPORTANCES, default="l1", help="channel ranking criterion")
    p.add_argument("--steps", type=int, default=1, help="prune in this many steps, fine-tuning after each")
    p.add_argument("--finetune-epochs", type=int, default=3, help="fine-tuning epochs after each step (0: none)")
    p.add_argument("--qat-epochs", type=int, default=0,
                   help="quantization-aware fine-tuning epochs after the last step (0: none); INT8 then loses less")
    p.add_argument("--qat-lr", type=float, default=1e-4, help="quantization-aware fine-tuning learning rate")
    p.add_argument("--teacher", default=None, help="FAN teacher checkpoint: recover with KD (else ground truth only)")
    add_data(p, "fine-tuning faces")
    p.add_argument("--val-data", default=None, help="validation faces (default: held-out synthetic faces)")
    p.add_argument("--round-to", type=int, default=16, help="keep pruned widths multiples of this")
    p.add_argument("--min-channels", type=int, default=32, help="never prune layers this narrow or narrower")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate (cosine decay)")
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="keep a weight average while fine-tuning and end on it (e.g. 0.998; 0: the last weights)")
    add_out(p, "runs/prune", "output folder (pruned.pt, prune_report.json, logs)")
    add_device(p)
    add_seed(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted pruning run in --out")
    add_progress(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors(PROG) as errors:
        errors.folder = check_output_dir(args.out)
        config = PruneConfig(ratio=args.ratio, channel_ratio=args.channel_ratio, params_budget=args.params_budget,
                             budget=args.budget,
                             flops_budget=args.flops_budget, importance=args.importance, steps=args.steps,
                             finetune_epochs=args.finetune_epochs, qat_epochs=args.qat_epochs,
                             qat_lr=args.qat_lr, round_to=args.round_to,
                             min_channels=args.min_channels, batch_size=args.batch_size, lr=args.lr,
                             ema_decay=args.ema_decay,
                             device=args.device)
        report = prune_checkpoint(args.checkpoint, config, data=args.data, val_data=args.val_data,
                                  teacher_checkpoint=args.teacher, out=args.out, seed=args.seed,
                                  progress=show_progress(args.progress), resume=args.resume)
        for step in report.steps:
            print(step_line(step, report.before, len(report.steps) - 1))
        if report.qat is not None:
            print(qat_line(report.qat))
        print(f"wrote {report.checkpoint} ({100 * report.param_reduction:.1f}% fewer parameters, "
              f"{100 * report.mac_reduction:.1f}% fewer MACs; {_recovery(report.kd, config.finetune_epochs)}); "
              f"report {report.report_path}")
    return 0


def _recovery(kd: bool, epochs: int) -> str:
    if epochs == 0:
        return "no fine-tuning"
    return f"{epochs} epoch(s) of {'KD' if kd else 'ground-truth'} fine-tuning per step"
