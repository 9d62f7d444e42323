"""``python -m export.describe MODEL --input-size 112 ... --out described.onnx``: write a model's description
into a copy of it, so the file describes itself from then on.

A model exported elsewhere carries no ``landmarks.*`` metadata, so every command needs the
description flags (:mod:`landmarks.describe`). This writes them once: into the ONNX
``metadata_props`` of a copy, or a sidecar ``<file>.json`` beside a copy of a ``.tflite``. The model
itself is not changed; the copy is checked by running it on one crop before it is written.

    python -m export.describe theirs.onnx --input-size 112 --mean 0,0,0 --std 1,1,1 \\
        --points-slice 0:136 --out theirs.described.onnx
    python -m landmarks.eval theirs.described.onnx data/300w/helen/testset      # no flags needed now
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from landmarks.cli import check_output_file, new_parser
from landmarks.describe import (
    ModelDescription,
    add_description_flags,
    check_reads_points,
    description_from_args,
    model_metadata,
)
from landmarks.errors import ConfigError, cli_errors, step
from landmarks.metadata import ArtifactMetadata

PROG = "python -m export.describe"


def describe_model(model: str | Path, out: str | Path, description: ModelDescription) -> ArtifactMetadata:
    """Write ``model`` with ``description`` merged into its metadata to ``out``; returns the metadata."""
    from landmarks.artifact import sidecar_path, write_onnx_metadata, write_sidecar
    from landmarks.atomic import atomic_path

    model, out = Path(model), Path(out)
    if out.suffix.lower() != model.suffix.lower():
        raise ConfigError(f"--out {out} must have the model's suffix ({model.suffix})")
    if out.resolve() == model.resolve():
        raise ConfigError("--out must be a new file, not the model itself")
    metadata = model_metadata(model, description)
    check_reads_points(model, metadata)
    with step(f"writing {out.name}", own_files=True):
        if model.suffix.lower() == ".onnx":
            import onnx

            proto = onnx.load(str(model))
            write_onnx_metadata(proto, metadata)
            with atomic_path(out) as tmp:
                onnx.save(proto, str(tmp))
        else:
            with atomic_path(out) as tmp:
                shutil.copyfile(model, tmp)
            if sidecar_path(out).exists():
                sidecar_path(out).unlink()
            write_sidecar(out, metadata)
    return metadata


def build_parser() -> argparse.ArgumentParser:
    p = new_parser(PROG, __doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[6:]),
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="an .onnx or .tflite landmark model")
    p.add_argument("--out", type=Path, required=True, help="the described copy (same suffix)")
    add_description_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors(PROG) as errors:
        errors.folder = args.out.resolve().parent
        check_output_file(args.out)
        if args.model.suffix.lower() not in (".onnx", ".tflite"):
            raise ConfigError(f"{args.model}: describe an .onnx or .tflite model")
        if not args.model.is_file():
            raise ConfigError(f"{args.model}: model file not found")
        metadata = describe_model(args.model, args.out, description_from_args(args))
        keys = ", ".join(f"{k}={v}" for k, v in metadata.to_strings().items())
        print(f"wrote {args.out}: {keys}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
