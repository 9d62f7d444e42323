"""``python -m export CHECKPOINT``: parse arguments, call :func:`export.export_checkpoint`, print a table.

Exit 0 on success, 1 when an artifact exceeds its parity bound (nothing is written), 2 on a
usage or input error (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from export.config import (
    DEFAULT_BOUND_FP16,
    DEFAULT_BOUND_ONNX,
    DEFAULT_BOUND_TFLITE,
    FORMATS,
    MIN_OPSET,
    ExportConfig,
)
from landmarks.cli import add_out, add_threads, check_output_dir, new_parser
from landmarks.errors import EXIT_OK, EXIT_REJECTED, cli_errors

PROG = "python -m export"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        PROG,
        "Export a landmarks torch checkpoint to deployable FP32 ONNX and/or TFLite files with "
        "artifact metadata, checking each against the torch model on real faces.",
        epilog="Exit status: 0 success, 1 an artifact was rejected (parity bound exceeded; nothing written), "
        "2 usage or input error, 3 internal error (traceback in OUT/error.log).",
    )
    parser.add_argument("checkpoint", help="torch checkpoint written by the distill stage (.pt)")
    add_out(parser, ".", "output folder, created if missing")
    parser.add_argument("--name", help="file stem of the artifacts (default: the checkpoint's stem)")
    parser.add_argument(
        "--formats", default=",".join(FORMATS),
        help=f"comma-separated formats out of {', '.join(FORMATS)} (default: %(default)s)",
    )
    parser.add_argument("--fp16", action="store_true", help="also write <name>.fp16.onnx (FP16 weights)")
    parser.add_argument("--opset", type=int, default=MIN_OPSET,
                        help=f"ONNX opset, >= {MIN_OPSET} (default: %(default)s)")
    parser.add_argument(
        "--parity-data", default="auto", metavar="PATH|synthetic|auto",
        help="faces for the parity check: a dataset folder, 'synthetic', or 'auto' = "
        "$LANDMARKS_DATA/300w/helen/testset when present, else synthetic (default: auto)",
    )
    parser.add_argument("--parity-count", type=int, default=64, help="faces to check (default: %(default)s)")
    parser.add_argument("--parity-bound-onnx", type=float, default=DEFAULT_BOUND_ONNX,
                        help="max |landmark difference| (xy_norm) for FP32 ONNX (default: %(default)g)")
    parser.add_argument("--parity-bound-tflite", type=float, default=DEFAULT_BOUND_TFLITE,
                        help="same for FP32 TFLite (default: %(default)g)")
    parser.add_argument("--parity-bound-fp16", type=float, default=DEFAULT_BOUND_FP16,
                        help="same for the FP16 ONNX variant (default: %(default)g)")
    add_threads(parser)
    parser.add_argument("--json", action="store_true", help="print the artifact reports as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with cli_errors(PROG) as errors:
        errors.folder = check_output_dir(args.out)
        from export.pipeline import export_checkpoint
        from export.report import ParityError

        config = ExportConfig(
            formats=ExportConfig.parse_formats(args.formats),
            fp16=args.fp16,
            opset=args.opset,
            parity_data=args.parity_data,
            parity_count=args.parity_count,
            parity_bound_onnx=args.parity_bound_onnx,
            parity_bound_tflite=args.parity_bound_tflite,
            parity_bound_fp16=args.parity_bound_fp16,
            num_threads=args.threads,
        )
        try:
            artifacts = export_checkpoint(args.checkpoint, args.out, config, name=args.name)
        except ParityError as err:
            _print(err.artifacts, args.json)
            print(f"{PROG}: {err}", file=sys.stderr)
            return EXIT_REJECTED
        _print(artifacts, args.json)
    return EXIT_OK


def _print(artifacts: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps([a.to_dict() for a in artifacts], indent=2))
    else:
        for artifact in artifacts:
            print(artifact.summary())


if __name__ == "__main__":
    sys.exit(main())
