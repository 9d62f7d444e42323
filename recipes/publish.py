"""Publishing a finished run: the gate's placed files become ``release/`` and ``rejected/``.

Order, so that nothing a reader trusts is ever partial or stale:

1. build the new folders beside the old ones (``.release.new``), every file copied atomically;
2. remove ``manifest.json`` (from now until step 5 no manifest claims anything);
3. swap each folder in with renames and delete the old one;
4. write report files;
5. write ``manifest.json`` atomically, last (the caller does 4 and 5).

A crash before 2 leaves the previous complete run untouched; after 2, no manifest (re-running
the recipe, all stages cached, publishes again).

Before a run does any work that changes its outcome (the first stage that is not cached),
:func:`retract` withdraws the previous publication (manifest first, then the folders and the
report), so a run that fails or is killed midway leaves no manifest and no stale release.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from landmarks.atomic import atomic_path
from recipes.manifest import MANIFEST

FOLDERS = ("release", "rejected")
REPORT_FILES = ("report.md", "ced.png", "samples.png", "training_curves.png")


def publish_folders(out: Path, gate_folder: Path) -> None:
    out = Path(out)
    staged = {}
    for name in FOLDERS:
        new = out / f".{name}.new"
        if new.exists():
            shutil.rmtree(new)
        new.mkdir(parents=True)
        source = gate_folder / name
        if source.is_dir():
            for path in sorted(source.iterdir()):
                if path.is_file():
                    with atomic_path(new / path.name) as tmp:
                        shutil.copyfile(path, tmp)
        staged[name] = new
    retract_manifest(out)
    for name, new in staged.items():
        final, old = out / name, out / f".{name}.old"
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            final.rename(old)
        new.rename(final)
        if old.exists():
            shutil.rmtree(old)


def retract_manifest(out: Path) -> None:
    (Path(out) / MANIFEST).unlink(missing_ok=True)


def retract(out: Path) -> bool:
    """Withdraw a published run: manifest first, then ``release/``, ``rejected/``, the report."""
    out = Path(out)
    if not any((out / name).exists() for name in (MANIFEST, *FOLDERS, *REPORT_FILES)):
        return False
    retract_manifest(out)
    for name in FOLDERS:
        if (out / name).exists():
            shutil.rmtree(out / name)
    for name in REPORT_FILES:
        (out / name).unlink(missing_ok=True)
    return True
