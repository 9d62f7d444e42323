"""``python -m recipes run|check|show``: the whole chain from a YAML recipe, and its verification.

    python -m recipes run recipes/quickstart.yaml [--out DIR] [--set student.epochs=3 ...]
    python -m recipes check runs/quickstart        # manifest intact, required artifacts passed
    python -m recipes show recipes/ci.yaml --set gate.max_regression=0.05   # resolved config

Exit status: 0 success, 1 a required artifact rejected by the gate, 2 a usage or input error (for
``check``: a run folder that does not match its manifest) (one line naming the key and
file for recipe errors), 3 an internal error (one line naming the stage; the traceback is in the
run folder's ``stages/log.txt``).
"""

from __future__ import annotations

import os

# Training shares the machine's cores with data-loading workers and often with other jobs; with
# OpenMP's default busy-waiting, two oversubscribed torch threads run several times slower than
# one. Passive waiting costs nothing when the cores are free. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
from collections.abc import Sequence

from landmarks.errors import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, cli_errors

PROG = "python -m recipes"


def build_parser() -> argparse.ArgumentParser:
    from landmarks.cli import add_out, add_progress, new_parser

    p = new_parser(PROG, __doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,check,show}")
    run = sub.add_parser("run", help="run a recipe into an artifact folder (stages cached by content hash)",
                         description="Run teacher -> distill -> prune -> export -> quantize -> gate and write the "
                         "artifact folder (manifest.json, report.md, release/, rejected/, checkpoints/). "
                         "Re-running skips stages whose inputs did not change and resumes an interrupted one.")
    run.add_argument("recipe", help="recipe YAML file, e.g. recipes/quickstart.yaml")
    _add_overrides(run)
    add_out(run, None, "artifact folder (default: runs/<recipe name>)")
    add_progress(run)
    check = sub.add_parser("check", help="verify a run folder against its manifest and print the artifact table")
    check.add_argument("out", help="artifact folder written by 'run'")
    show = sub.add_parser("show", help="validate a recipe and print its resolved config as YAML")
    show.add_argument("recipe")
    _add_overrides(show)
    return p


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key (value parsed as YAML), e.g. --set student.epochs=3; repeatable")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors(PROG):
        if args.command == "run":
            return _run(args)
        if args.command == "check":
            return _check(args.out)
        return _show(args)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from recipes.report import text_table
    from recipes.runner import run_recipe

    result = run_recipe(args.recipe, out=args.out, overrides=args.overrides, progress=args.progress)
    print()
    print(text_table(result.manifest))
    if result.exit_code != EXIT_OK:
        rejected = ", ".join(result.manifest["rejected_required"])
        print(f"{PROG}: required artifact(s) rejected by the gate: {rejected} (see {result.out}/rejected/)",
              file=sys.stderr)
    else:
        print(f"\nall required artifacts passed; {result.out}/release/, report {result.out}/report.md")
    return result.exit_code


def _check(out: str) -> int:
    from recipes.check import check_run, rejected_required
    from recipes.report import text_table

    manifest, problems = check_run(out)
    print(text_table(manifest))
    for problem in problems:
        print(f"{PROG} check: {problem}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    rejected = rejected_required(manifest)
    for line in rejected:
        print(f"{PROG} check: {line}", file=sys.stderr)
    if rejected:
        return EXIT_REJECTED
    print(f"\n{out}: manifest complete, {len(manifest['artifacts'])} artifact(s) match their sha256 and size; "
          "every required artifact passed")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    import yaml

    from recipes.schema import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    print(yaml.safe_dump(recipe.resolved(), sort_keys=False), end="")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
