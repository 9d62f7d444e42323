"""Run a recipe: each stage in order, skipped when its record is valid, then publish the folder.

Usage::

    from recipes.runner import run_recipe

    result = run_recipe("recipes/quickstart.yaml", out="runs/quickstart", overrides=["student.epochs=3"])
    print(result.exit_code, result.manifest["artifacts"])

Log lines (stdout and ``<out>/stages/log.txt``): ``[run] <stage>``, ``[done] <stage> (Ns)``,
``[cached] <stage>``, ``[skip] <stage> (disabled)``, ``[failed] <stage>: ...`` (an internal
error is followed by its whole traceback), ``[rejected] <stage>: ...``, ``[interrupted] <stage>``.
SIGTERM is handled like Ctrl-C: the stage stops (training saves its state first), its record is
not written, and the next run resumes there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landmarks.cli import check_output_dir, show_progress
from landmarks.errors import (
    EXIT_OK,
    EXIT_REJECTED,
    ConfigError,
    GateRejected,
    InternalError,
    LandmarksError,
    describe,
)
from recipes.cache import StageRecord, StageStore, code_hash, hash_inputs
from recipes.publish import retract
from recipes.schema import Recipe, load_recipe
from recipes.stages import STAGES, Context, check_available


class StageError(LandmarksError):
    """A stage failed on bad input or data; the run stops and nothing is published (exit 2)."""


@dataclass
class RunResult:
    out: Path
    manifest: dict[str, Any]
    ran: list[str]
    cached: list[str]

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.manifest["passed"] else EXIT_REJECTED


def run_recipe(
    recipe_file: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool | None = None,
) -> RunResult:
    """Load, validate and run ``recipe_file``; see the module docstring."""
    if out is not None:
        check_output_dir(out)
    recipe = load_recipe(recipe_file, overrides)
    check_available(recipe)
    out_dir = check_output_dir(Path(out) if out is not None else Path("runs") / recipe.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = show_progress(progress)
    store = StageStore(out_dir)
    with _lock(out_dir), _terminate_as_interrupt():
        started = time.perf_counter()
        ctx = Context(recipe, out_dir, {}, progress, store.log)
        store.log(f"recipe {recipe.name} ({recipe_file}) -> {out_dir}")
        ran, cached, stages = _run_stages(ctx, store)
        manifest = _publish(ctx, str(recipe_file), stages, time.perf_counter() - started)
    return RunResult(out_dir, manifest, ran, cached)


def _run_stages(ctx: Context, store: StageStore) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    ran, cached, stages = [], [], {}
    for stage in STAGES:
        if not stage.enabled(ctx.recipe):
            store.log(f"[skip] {stage.name} (disabled)")
            continue
        input_hash = hash_inputs({"stage": stage.name, "code": code_hash(stage.code), **stage.inputs(ctx)})
        record = store.valid(stage.name, input_hash)
        if record is not None:
            store.log(f"[cached] {stage.name}")
            cached.append(stage.name)
            ctx.records[stage.name] = record
            stages[stage.name] = {"status": "cached", "input_hash": input_hash, "seconds": record.seconds}
            continue
        if not ran and retract(ctx.out):
            store.log("previous publication withdrawn (manifest, release/, rejected/, report) until this run ends")
        resume = store.begin(stage.name, input_hash) and stage.resumable
        store.log(f"[run] {stage.name}" + (" (resuming)" if resume else ""))
        started = time.perf_counter()
        try:
            outputs, details = stage.run(ctx, resume)
        except KeyboardInterrupt:
            store.log(f"[interrupted] {stage.name}: re-run the same command to resume")
            raise
        except LandmarksError as err:
            store.log(f"[failed] {stage.name}: {err}")
            raise StageError(f"stage {stage.name} failed: {err}") from err
        except GateRejected as err:
            store.log(f"[rejected] {stage.name}: {err}")
            raise GateRejected(f"stage {stage.name}: {err}; nothing published") from err
        except Exception as err:  # a bug or a broken intermediate file: the tool's error, with its traceback
            cause = err.__cause__ if isinstance(err, InternalError) and err.__cause__ is not None else err
            where = f"stage {stage.name}" + (f", {err.step}" if isinstance(err, InternalError) else "")
            message = err.message if isinstance(err, InternalError) else describe(err)
            store.log(f"[failed] {where}: {message}\n" + "".join(traceback.format_exception(err)).rstrip())
            raise InternalError(where, f"{message}; nothing published", log=store.log_path) from cause
        seconds = time.perf_counter() - started
        record = StageRecord(stage.name, input_hash, store.outputs(outputs), seconds, details)
        store.finish(record)
        ctx.records[stage.name] = record
        ran.append(stage.name)
        stages[stage.name] = {"status": "ran", "input_hash": input_hash, "seconds": round(seconds, 2)}
        store.log(f"[done] {stage.name} ({seconds:.1f}s)")
    return ran, cached, stages


def _publish(ctx: Context, recipe_file: str, stages: dict[str, dict[str, Any]], seconds: float) -> dict[str, Any]:
    from recipes.manifest import build_manifest, dataset_records, write_manifest
    from recipes.publish import publish_folders
    from recipes.report import distillation_warnings, write_figures, write_report

    recipe: Recipe = ctx.recipe
    gate_folder = ctx.path("work/gate")
    results = json.loads(ctx.path(ctx.detail("gate", "results")).read_text())
    checkpoints = {"student": ctx.detail("distill", "student"), "teacher": ctx.detail("distill", "teacher")}
    if "prune" in ctx.records:
        checkpoints["pruned_student"] = ctx.detail("prune", "student")
    manifest = build_manifest(
        recipe_name=recipe.name,
        recipe_file=recipe_file,
        config=recipe.resolved(),
        results=results,
        required=recipe.artifacts.required,
        stages=stages,
        checkpoints=checkpoints,
        wall_seconds=seconds,
        datasets=dataset_records(recipe.data),
    )
    manifest["samples"] = results["samples"]
    publish_folders(ctx.out, gate_folder)
    prune = ctx.detail("prune", "report") if "prune" in ctx.records else None
    figures = write_figures(ctx.out, gate_folder, ctx.path("checkpoints"), prune)
    write_report(ctx.out, manifest, figures, prune)
    write_manifest(ctx.out, manifest)
    for warning in distillation_warnings(manifest["references"]):
        ctx.log(f"[warn] {warning}")
    ctx.log(f"[done] published {ctx.out}/manifest.json, report.md, release/ ({_count(ctx.out / 'release')} files), "
            f"rejected/ ({_count(ctx.out / 'rejected')} files)")
    return manifest


def _count(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """One run per folder at a time (an advisory lock on ``<out>/.lock``)."""
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{out}: another recipe run is using this folder") from None
        yield


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so a killed run unwinds like Ctrl-C (temp files removed)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
