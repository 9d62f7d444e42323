"""``python -m landmarks.data PATH``: check a dataset and list every bad file (exit 2 if any)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from landmarks.cli import new_parser
from landmarks.coords import DEFAULT_CROP_SCALE
from landmarks.data.inspection import DatasetReport, Progress, inspect_dataset
from landmarks.data.specs import split_spec
from landmarks.errors import EXIT_OK, EXIT_USAGE, cli_errors

PROG = "python -m landmarks.data"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        PROG,
        "Check a landmark dataset before training or evaluating on it: detect its format, "
        "count faces and points, decode every image, and list every bad file with its reason "
        "(undecodable image, malformed .pts, points outside the image, mixed point counts, "
        "image without annotation). Exit status: 0 all good, 2 bad files or bad input.",
        epilog="DATASET is a folder of images with same-named iBUG .pts files (searched recursively), "
        "a FaceSynthetics folder (NNNNNN.png|jpg + NNNNNN_ldmks.txt), "
        "a face-synthetics annot.pkl (or its folder), a WFLW annotation list "
        "(list_98pt_rect_attr_*.txt), or 'synthetic' / 'synthetic:N'. "
        "Several datasets may be given, or joined with commas.",
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET", help="dataset path(s) to check")
    parser.add_argument("--input-size", type=int, default=112, metavar="S",
                        help="model input side, to report how much crops are resized (default: 112)")
    parser.add_argument("--crop-scale", type=float, default=DEFAULT_CROP_SCALE, metavar="F",
                        help="crop side / face box side, docs/DESIGN.md, Coordinates (default: %(default)s)")
    return parser


def _progress(label: str) -> Progress:
    """A tqdm bar on a terminal; in a log, a line on stderr per 500 faces checked."""
    from landmarks.progress import progress

    return lambda items: progress(items, f"checking {label}", every=500, unit="faces")


def format_report(report: DatasetReport, input_size: int) -> str:
    """The human summary of one dataset, then one line per bad file."""
    lines = [f"dataset:  {report.spec}", f"format:   {report.format}",
             f"faces:    {report.num_faces}" + (f" usable, {len(report.problems)} bad file(s)"
                                               if report.problems else ""),
             f"points:   {report.num_points if report.num_points is not None else '-'}"]
    if report.image_size_min is not None and report.image_size_max is not None:
        (w0, h0), (w1, h1) = report.image_size_min, report.image_size_max
        lines.append(f"images:   {w0}x{h0}" + ("" if (w0, h0) == (w1, h1) else f" .. {w1}x{h1}"))
    if report.crop_side_min is not None and report.crop_side_max is not None:
        lo, hi = report.crop_side_min, report.crop_side_max
        lines.append(f"crops:    {lo:.0f} .. {hi:.0f} px -> {input_size} px "
                     f"(x{input_size / hi:.2f} .. x{input_size / lo:.2f})")
    lines += [f"BAD  {problem}" for problem in report.problems]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.input_size < 8:
        parser.error(f"--input-size must be at least 8, got {args.input_size}")
    if not args.crop_scale > 0:
        parser.error(f"--crop-scale must be positive, got {args.crop_scale}")
    status = EXIT_OK
    with cli_errors(PROG):
        specs = [s for item in args.datasets for s in split_spec(item)]
        for i, spec in enumerate(specs):
            report = inspect_dataset(spec, crop_scale=args.crop_scale, input_size=args.input_size,
                                     progress=_progress(spec))
            print(("\n" if i else "") + format_report(report, args.input_size))
            if not report.ok:
                status = EXIT_USAGE
    return status


if __name__ == "__main__":
    raise SystemExit(main())
