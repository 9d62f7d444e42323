"""``python -m landmarks.zoo publish RUN_DIR`` | ``check``: fill the shipped-model folder, or verify it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from landmarks.cli import check_output_dir, new_parser
from landmarks.errors import EXIT_OK, EXIT_USAGE, cli_errors

PROG = "python -m landmarks.zoo"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, (
        "Shipped models: 'publish' copies the release artifacts of a finished recipe run (FP32 ONNX, INT8 ONNX, "
        "INT8 TFLite + sidecar) into landmarks/zoo/ with a trimmed manifest.json and a generated MODEL_CARD.md "
        "(2 MB at most); 'check' verifies every listed file's size and sha256 (exit 2 on a mismatch)."))
    sub = parser.add_subparsers(dest="command", required=True)
    publish = sub.add_parser("publish", help="copy a recipe run's release artifacts into the zoo")
    publish.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="recipe run folder (manifest.json, release/)")
    publish.add_argument("--dest", type=Path, default=None, help="zoo folder (default: the package's landmarks/zoo/)")
    check = sub.add_parser("check", help="verify the zoo's files against its manifest")
    check.add_argument("--dest", type=Path, default=None, help="zoo folder (default: the package's landmarks/zoo/)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from landmarks.zoo import ZOO_DIR, verify

    dest = args.dest or ZOO_DIR
    with cli_errors(PROG):
        if args.command == "check":
            problems = verify(dest)
            for problem in problems:
                print(f"BAD  {problem}")
            print(f"{dest}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
            return EXIT_USAGE if problems else EXIT_OK
        from landmarks.zoo.publish import publish

        check_output_dir(dest, "--dest")
        manifest = publish(args.run_dir, dest)
        for entry in manifest["artifacts"]:
            nme = entry.get("nme_io", float("nan"))
            size = entry["bytes"] / 1e6
            print(f"{entry['file']:<28} {size:6.2f} MB  nme_io {nme:.3f} %  {entry.get('verdict', '-')}")
        print(f"published {len(manifest['artifacts'])} artifact(s), {manifest['total_bytes'] / 1e6:.2f} MB -> {dest}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
