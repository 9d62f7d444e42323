"""``python -m landmarks.eval MODEL DATA``: evaluate one model and write metrics and plots.

Thin on purpose: it parses arguments, calls :func:`landmarks.evaluate.evaluate` and the
plotting functions, and prints the metric table. Writes ``metrics.json``, ``ced.png`` and
``samples.png`` (atomically) into ``--out``. A model without metadata is described with the flags
of :mod:`landmarks.describe`; ``--sweep-crop-scale 1.0:1.6:0.1`` prints the NME at each crop scale
instead (to find the one a model was trained at; it is reported, never applied).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from landmarks.cli import add_out, add_progress, add_threads, new_parser, positive_int, show_progress
from landmarks.describe import add_description_flags, description_from_args
from landmarks.errors import cli_errors

PROG = "python -m landmarks.eval"
SAMPLES = 16


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        PROG,
        "Evaluate a facial-landmark model (.onnx, .tflite, or a .pt/.pth checkpoint) on an "
        "annotated dataset and report NME (inter-ocular, box, image), failure rate and AUC. "
        "The model's own metadata (input size, crop scale, normalization) defines the crops.",
        epilog="example: python -m landmarks.eval student.onnx data/300w/helen/testset --limit 200",
    )
    parser.add_argument(
        "model", type=Path, help="model artifact: .onnx, .tflite (with its .json sidecar), .pt/.pth"
    )
    parser.add_argument(
        "data", help="dataset: folder of images + .pts, annot.pkl folder, WFLW list file, or synthetic[:N]"
    )
    add_out(parser, None, "output folder for metrics.json, ced.png, samples.png (default: ./eval_<model stem>/)")
    count = {"type": positive_int, "metavar": "N"}
    parser.add_argument("--batch-size", default=32, help="crops per inference call (default 32)", **count)
    parser.add_argument("--limit", default=None, help="evaluate only the first N faces", **count)
    parser.add_argument("--sweep-crop-scale", default=None, metavar="START:END:STEP",
                        help="print nme_io at each crop scale (e.g. 1.0:1.6:0.1) instead of one evaluation")
    add_threads(parser)
    add_progress(parser)
    add_description_flags(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors(PROG) as errors:
        errors.folder = Path(args.out) if args.out is not None else Path(f"eval_{args.model.stem}")
        run(args)
    return 0


def run(args: argparse.Namespace) -> None:
    from landmarks.atomic import write_json
    from landmarks.cli import check_output_dir
    from landmarks.describe import model_metadata
    from landmarks.evaluate import evaluate
    from landmarks.plots import plot_ced, plot_samples
    from landmarks.runtimes import load_predictor

    out = check_output_dir(Path(args.out) if args.out is not None else Path(f"eval_{args.model.stem}"))
    metadata = model_metadata(args.model, description_from_args(args))
    predictor = load_predictor(args.model, num_threads=args.threads, metadata=metadata)
    progress = show_progress(args.progress)
    if args.sweep_crop_scale is not None:
        sweep(predictor, args, progress)
        return
    # Without a terminal the bar draws nothing useful: one line per stage on stdout instead (unless --no-progress).
    stages = args.progress is None and not progress
    start = time.monotonic()
    if stages:
        print(f"evaluating {predictor.name} ({predictor.runtime}) on {args.data} ...", flush=True)
    report = evaluate(predictor, args.data, batch_size=args.batch_size, limit=args.limit, progress=progress)
    if stages:
        print(f"evaluated {report.metrics.num_images} faces in {time.monotonic() - start:.1f} s; writing plots",
              flush=True)
    write_json(out / "metrics.json", report.to_json())
    plot_ced({report.model_name: report.per_image["nme_io"]}, out / "ced.png")
    count = min(SAMPLES, len(report.images))
    plot_samples(report.images[:count], report.pred[:count], report.gt[:count], out / "samples.png")
    print_table(report)
    print(f"wrote {out / 'metrics.json'}, {out / 'ced.png'}, {out / 'samples.png'}")


def sweep(predictor, args: argparse.Namespace, progress: bool) -> None:
    """The NME table of ``--sweep-crop-scale``; the lowest is marked, and nothing is applied."""
    from landmarks.evaluate import parse_range, sweep_crop_scale

    scales = parse_range(args.sweep_crop_scale)
    results = sweep_crop_scale(predictor, args.data, scales, batch_size=args.batch_size, limit=args.limit,
                               progress=progress)
    best = min(results, key=lambda item: item[1].metrics.nme_io)[0]
    used = predictor.metadata.crop_scale
    print(f"{predictor.name} ({predictor.runtime}) on {args.data}: nme_io by crop scale "
          f"({results[0][1].metrics.num_images} faces)")
    print("crop_scale  nme_io %   fr@0.10")
    for scale, report in results:
        marks = (" <- lowest" if scale == best else "") + (" (the model's own)" if abs(scale - used) < 1e-9 else "")
        print(f"{scale:10.3f}  {report.metrics.nme_io:8.3f}  {report.metrics.fr_010:8.4f}{marks}")
    print(f"lowest nme_io at crop scale {best:g}; the model is described with {used:g} (reported only: "
          "nothing was changed)")


def print_table(report) -> None:
    """The metrics of docs/DESIGN.md, each NME with the normalizer it uses."""
    from rich.console import Console
    from rich.table import Table

    from landmarks.evaluate import normalizers

    m = report.metrics
    norms = normalizers(report.metadata.num_points, report.metadata.input_size)
    table = Table(
        title=f"{report.model_name} ({report.runtime}) on {report.dataset}: {m.num_images} faces",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("normalized by / computed on")
    table.add_row("nme_io", f"{m.nme_io:.3f} %", norms["nme_io"])
    table.add_row("nme_box", f"{m.nme_box:.3f} %", norms["nme_box"])
    table.add_row("nme_img", f"{m.nme_img:.3f} %", norms["nme_img"])
    rates = {"fr@0.08": m.fr_008, "fr@0.10": m.fr_010, "auc@0.08": m.auc_008, "auc@0.10": m.auc_010}
    for name, value in rates.items():
        table.add_row(name, f"{value:.4f}", "per-image nme_io (fraction)")
    Console(width=max(100, Console().width)).print(table)


if __name__ == "__main__":
    sys.exit(main())
