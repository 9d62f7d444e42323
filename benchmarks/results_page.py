"""Generate ``docs/RESULTS.md`` (+ ``docs/img/ced_300w.png``) from run folders, manifests and benchmark JSON.

    python benchmarks/results_page.py                 # regenerate from whatever exists
    python benchmarks/results_page.py --no-eval       # only what the JSON files already hold

Sources, each optional (a missing one becomes a "pending: <source>" row, never a crash):

* ``benchmarks/results/distill_300w.json``: teacher, student with KD, student without KD;
* ``benchmarks/results/prune_300w.json``: pruned students (the 30 % KD-recovery arm is the headline);
  its unpruned arm carries the INT8 ONNX of the KD student;
* ``benchmarks/results/quant_int8.json``: INT8 ONNX / TFLite, used only when measured on a trained model;
* a recipe folder's ``manifest.json`` (docs/DESIGN.md; ``--manifest``, or the newest ``runs/*/manifest.json``):
  every released artifact, with ``work/gate/errors.json`` for its CED curves;
* ``benchmarks/results/suite.json`` (``benchmarks/run_all.py``): batch-1 latency of every runtime;
* the checkpoints themselves (``runs/300w/{kd,nokd}/*.pt``, the pruned arm's): MACs, file size, and,
  unless ``--no-eval``, FR/AUC and per-image errors on the 300-W common test set for the CED figure,
  cached by checkpoint hash in ``benchmarks/results/ced_300w.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import shown_path  # noqa: E402
from landmarks.atomic import write_json, write_text  # noqa: E402
from landmarks.data.specs import data_root  # noqa: E402
from landmarks.errors import cli_errors  # noqa: E402

DATA = data_root() / "300w"
TEST = ("helen/testset", "lfpw/testset")
HEADLINE_PRUNE_ARM = "r0.3_kd"  # what recipes/300w_pfld025.yaml ships: 30 % of parameters, KD recovery
COMMAND = "python benchmarks/results_page.py"

# Published figures, quoted, not re-measured here. "verified" says what was checked in this session.
PUBLISHED = [
    {"model": "PFLD 0.25X (Guo et al., 2019)", "nme_io": "3.38", "size": "2.1 MB",
     "note": "size and >140 fps/face on a Snapdragon 845 phone: from the paper's abstract (verified); "
             "300-W common nme_io from the paper's 300-W table, quoted from memory (unverified)"},
    {"model": "PFLD 1X (Guo et al., 2019)", "nme_io": "3.32", "size": "12.5 MB",
     "note": "quoted from memory of the paper's tables (unverified)"},
    {"model": "FAN / 2D-FAN (Bulat & Tzimiropoulos, 2017)", "nme_io": "not quoted", "size": "-",
     "note": "the FAN paper reports AUC on the 300-W private test set with bounding-box normalization, "
             "which is not comparable with 300-W common nme_io; our teacher is a much smaller FAN (see above)"},
]


@dataclass(frozen=True)
class Sources:
    """Where the generator looks; every path may be absent."""

    results: Path = ROOT / "benchmarks" / "results"
    runs: Path = ROOT / "runs"
    manifest: Path | None = None
    data: Path | None = DATA


def _load(path: Path | None) -> Any:
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def find_manifest(sources: Sources) -> Path | None:
    if sources.manifest is not None:
        return sources.manifest if sources.manifest.is_file() else None
    if not sources.runs.is_dir():
        return None
    found = sorted(sources.runs.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def on_300w_common(spec: Any) -> bool:
    """Whether an eval-set description names the 300-W common test folders (Helen test + LFPW test)."""
    text = str(spec)
    return all(t in text for t in TEST)


# ---------------------------------------------------------------------------- checkpoints


def _sha(path: Path) -> str:
    from landmarks.models.checkpoint import file_sha256

    return file_sha256(path)


def footprint(checkpoint: Path) -> dict[str, Any]:
    """Inference params and MACs (``distill.prune.measure``) and file size of a torch checkpoint."""
    from distill.prune import measure
    from landmarks.models import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    f = measure(ckpt.build().eval(), ckpt.metadata.input_size)
    return {"params": f.params, "macs": f.macs, "bytes": checkpoint.stat().st_size}


def evaluate_models(models: dict[str, Path], data: Path | None, cache_path: Path,
                    log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Section-3 metrics and per-image ``nme_io`` of each model file on the 300-W common test set, cached by hash.

    ``data=None``: cached results only, nothing is evaluated.
    """
    from landmarks.evaluate import evaluate
    from landmarks.runtimes import load_predictor

    cache = _load(cache_path) or {"test_set": ",".join(TEST), "models": {}}
    spec = ",".join(str(data / t) for t in TEST) if data is not None else ""
    out = {}
    for label, path in models.items():
        sha = _sha(path)
        entry = cache["models"].get(sha)
        if entry is None and data is None:
            continue
        if entry is None:
            log(f"evaluating {label} ({path}) on the 300-W common test set ...")
            report = evaluate(load_predictor(path, num_threads=2), spec, batch_size=32, progress=False, keep_images=0)
            entry = {"file": str(path), "metrics": report.metrics.as_dict(),
                     "nme_io_per_image": [round(float(v), 6) for v in report.per_image["nme_io"]]}
            cache["models"][sha] = entry
            write_json(cache_path, cache)
        out[label] = entry
    return out


# ---------------------------------------------------------------------------- rows


def _row(label: str, source: str, **values: Any) -> dict[str, Any]:
    return {"model": label, "source": source, **values}


def _pending(label: str, source: str) -> dict[str, Any]:
    return {"model": label, "pending": source}


def headline_rows(sources: Sources, manifest: dict[str, Any] | None, manifest_path: Path | None,
                  evaluate: bool, log: Callable[[str], None]) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """The six rows of the headline table and the per-image errors behind the CED figure."""
    res = sources.results
    gap = _load(res / "distill_gap.json")
    if gap is not None:
        return gap_rows(gap, sources, manifest, manifest_path, evaluate, log)
    distill = _load(res / "distill_300w.json")
    prune = _load(res / "prune_300w.json")
    quant = _load(res / "quant_int8.json")
    suite = _load(res / "suite.json")
    caveats = {}
    if prune is not None and not on_300w_common(prune.get("test")):
        caveats["prune"] = f"prune_300w.json was not measured on the 300-W test set ({prune.get('label')})"
        prune = None
    if quant is not None and ("random" in str(quant.get("model", "")).lower() or not on_300w_common(quant.get("eval"))):
        caveats["quant"] = f"quant_int8.json is not usable here (model: {quant.get('model')})"
        quant = None
    if manifest is not None and not on_300w_common(manifest.get("eval_set", {}).get("name")):
        caveats["manifest"] = f"{shown_path(manifest_path)} was not evaluated on the 300-W common test set"
        manifest, manifest_path = None, None

    run_dir = Path((distill or {}).get("config", {}).get("out") or sources.runs / "300w" / "kd")
    run_dir = run_dir if run_dir.is_absolute() else ROOT / run_dir
    checkpoints = {"teacher": run_dir / "teacher.pt", "student_kd": run_dir / "student.pt",
                   "student_nokd": run_dir.parent / "nokd" / "student.pt"}
    prune_rows = {r["arm"]: r for r in (prune or {}).get("rows", [])}
    pruned = prune_rows.get(HEADLINE_PRUNE_ARM) or next((r for r in prune_rows.values() if r["ratio"] > 0), None)
    if pruned is not None:
        checkpoints["pruned"] = Path(pruned["checkpoint"])
    unpruned = prune_rows.get("unpruned")
    int8_onnx_file = Path(unpruned["onnx_int8"]) if unpruned and unpruned.get("onnx_int8") else None
    if int8_onnx_file is not None and int8_onnx_file.is_file():
        checkpoints["int8_onnx"] = int8_onnx_file
    checkpoints = {k: (p if p.is_absolute() else ROOT / p) for k, p in checkpoints.items()}
    checkpoints = {k: p for k, p in checkpoints.items() if p.is_file()}

    data = sources.data if evaluate and sources.data is not None and sources.data.is_dir() else None
    evals = evaluate_models(checkpoints, data, res / "ced_300w.json", log)
    feet = {k: footprint(p) for k, p in checkpoints.items() if p.suffix == ".pt"}
    latency = _suite_latency(suite)
    torch_row = _torch_latency_row(suite, feet)

    rows = []
    students = (("teacher", "Teacher (FAN)", "teacher"), ("student_kd", "Student pfld025 + KD", "student_kd"),
                ("student_nokd", "Student pfld025, no KD", "student_nokd"))
    for key, label, block in students:
        m = (distill or {}).get(block)
        if m is None:
            rows.append(_pending(label, "benchmarks/results/distill_300w.json"))
            continue
        rows.append(_merge(_row(label, "distill_300w.json", nme_io=m.get("nme_io"), fr_010=m.get("fr_010"),
                                auc_008=m.get("auc_008"),
                                params=(feet.get(key) or {}).get("params", m.get("params"))),
                           feet.get(key), evals.get(key),
                           latency.get("torch") if key == torch_row else None))
    if pruned is None:
        rows.append(_pending("Pruned (30 %, KD recovery)", caveats.get("prune", "benchmarks/results/prune_300w.json")))
    else:
        rows.append(_merge(_row(f"Pruned ({pruned['arm']}: -{100 * pruned.get('param_reduction', 0):.0f} % params)",
                                "prune_300w.json", nme_io=pruned.get("nme_torch"), params=pruned.get("params"),
                                macs=pruned.get("macs")), feet.get("pruned"), evals.get("pruned"),
                           latency.get("torch") if torch_row == "pruned" else None))
    rows.append(_int8_row("onnx", manifest, manifest_path, unpruned, quant, evals.get("int8_onnx"), latency,
                          feet.get("student_kd")))
    rows.append(_int8_row("tflite", manifest, manifest_path, None, quant, None, latency, feet.get("student_kd")))
    notes = [text for key, text in caveats.items() if key != "prune"]
    for row in rows[-2:]:
        if "pending" in row and notes:
            row["pending"] += " (" + "; ".join(notes) + ")"

    curves = {label_for(k): e["nme_io_per_image"] for k, e in evals.items()}
    curves.update(_manifest_curves(manifest_path))
    return rows, curves


def gap_rows(gap: dict[str, Any], sources: Sources, manifest: dict[str, Any] | None, manifest_path: Path | None,
             evaluate: bool, log: Callable[[str], None]) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """The headline rows from ``distill_gap.json`` (``benchmarks/distill_gap.py``) and the recipe manifest."""
    checkpoints = {k: Path(v) for k, v in gap.get("checkpoints", {}).items()}
    checkpoints = {k: (p if p.is_absolute() else ROOT / p) for k, p in checkpoints.items()}
    checkpoints = {k: p for k, p in checkpoints.items() if p.is_file()}
    data = sources.data if evaluate and sources.data is not None and sources.data.is_dir() else None
    evals = evaluate_models(checkpoints, data, sources.results / "ced_300w.json", log)
    feet = {k: footprint(p) for k, p in checkpoints.items() if p.suffix == ".pt"}
    latency: dict[str, Any] = {}  # suite.json timed older artifacts; the recipe manifest has these ones' latency
    source = "distill_gap.json"
    rows = [
        _merge(_row("Teacher (FAN)", source, nme_io=gap.get("teacher_nme_io")), feet.get("teacher"),
               evals.get("teacher")),
        _merge(_row("Student pfld025 + KD", source, nme_io=gap.get("student_kd_nme_io")), feet.get("student_kd"),
               evals.get("student_kd")),
        _merge(_row("Student pfld025, no KD (same budget)", source, nme_io=gap.get("student_no_kd_nme_io")),
               feet.get("student_nokd"), evals.get("student_nokd")),
        _merge(_row("Pruned (30 % of parameters, KD recovery)", source, nme_io=gap.get("student_pruned_nme_io")),
               feet.get("pruned"), evals.get("pruned")),
        _int8_row("onnx", manifest, manifest_path, None, None, None, latency, feet.get("pruned")),
        _int8_row("tflite", manifest, manifest_path, None, None, None, latency, feet.get("pruned")),
    ]
    curves = {label_for(k): e["nme_io_per_image"] for k, e in evals.items()}
    curves.update(_manifest_curves(manifest_path))
    return rows, curves


def label_for(key: str) -> str:
    return {"teacher": "teacher (FAN)", "student_kd": "student + KD", "student_nokd": "student, no KD",
            "pruned": "pruned", "int8_onnx": "INT8 ONNX"}.get(key, key)


def _merge(row: dict[str, Any], foot: dict[str, Any] | None, ev: dict[str, Any] | None,
           latency: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fill what the JSON row lacks from the checkpoint's footprint and evaluation; the JSON wins."""
    if foot:
        for k in ("params", "macs", "bytes"):
            if row.get(k) is None:
                row[k] = foot[k]
    if ev:
        m = ev["metrics"]
        for k in ("nme_io", "fr_010", "auc_008"):
            if row.get(k) is None:
                row[k] = m[k]
    if latency:
        row["latency"] = latency
    return row


def _int8_row(fmt: str, manifest: dict[str, Any] | None, manifest_path: Path | None, unpruned: dict[str, Any] | None,
              quant: dict[str, Any] | None, ev: dict[str, Any] | None, latency: dict[str, Any],
              foot: dict[str, Any] | None) -> dict[str, Any]:
    label = f"INT8 {'ONNX (onnxruntime)' if fmt == 'onnx' else 'TFLite (LiteRT)'}"
    suite_lat = latency.get(f"{fmt}_int8")
    macs = (foot or {}).get("macs")
    for a in (manifest or {}).get("artifacts", []):
        if a["name"] == f"{fmt}_int8":
            return _row(label, f"manifest ({shown_path(manifest_path)})", nme_io=a.get("nme_io"),
                        fr_010=a.get("fr@0.10"), auc_008=a.get("auc@0.08"), bytes=a.get("bytes"),
                        params=a.get("params"), latency_manifest=a.get("latency_ms"), latency=suite_lat,
                        verdict=a.get("verdict"))
    if fmt == "onnx" and unpruned is not None and unpruned.get("nme_int8") is not None:
        return _merge(_row(label, "prune_300w.json (unpruned arm)", nme_io=unpruned["nme_int8"],
                           bytes=unpruned.get("onnx_int8_bytes"), params=unpruned.get("params"),
                           macs=unpruned.get("macs"), latency=suite_lat, verdict=unpruned.get("int8_verdict")),
                      None, ev)
    variant = "onnx QDQ U8S8 (default)" if fmt == "onnx" else "tflite full-int8 (float io)"
    for r in (quant or {}).get("results", []):
        if r["variant"] == variant:
            return _row(label, "quant_int8.json", nme_io=r["nme_int8"], bytes=r["bytes_int8"], macs=macs,
                        latency=suite_lat, verdict=r["verdict"])
    return _pending(label, "a recipe manifest, prune_300w.json, or quant_int8.json re-run on the trained student")


def _torch_latency_row(suite: dict[str, Any] | None, feet: dict[str, dict[str, Any]]) -> str | None:
    """Which row the suite's torch timing belongs to: the checkpoint with the same parameter count."""
    torch_file = ((suite or {}).get("sizes", {}).get("torch") or {}).get("file")
    if not torch_file or not (ROOT / torch_file).is_file():
        return None
    params = footprint(ROOT / torch_file)["params"]
    return next((key for key in ("pruned", "student_kd") if (feet.get(key) or {}).get("params") == params), None)


def _suite_latency(suite: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """``{artifact: {threads: ms}}`` from ``suite.json``."""
    if not suite:
        return {}
    out: dict[str, dict[str, float]] = {}
    for threads, by_name in suite.get("latency_ms", {}).items():
        for name, ms in by_name.items():
            out.setdefault(name, {})[threads] = ms
    return out


def _manifest_curves(manifest_path: Path | None) -> dict[str, list[float]]:
    if manifest_path is None:
        return {}
    errors = _load(manifest_path.parent / "work" / "gate" / "errors.json") or {}
    return {f"recipe {name}": values for name, values in errors.items() if name in ("onnx_int8", "tflite_int8")}


# ---------------------------------------------------------------------------- rendering


def _fmt(value: Any, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value * scale:{spec}}{suffix}"


def render(rows: list[dict[str, Any]], manifest: dict[str, Any] | None, manifest_path: Path | None,
           suite: dict[str, Any] | None, figure: str | None, sources: Sources) -> str:
    lines = [
        "# Results: 300-W common test set",
        "",
        f"Generated by `{COMMAND}` from the benchmark outputs in `benchmarks/results/`, the run folders under "
        "`runs/`, and a recipe manifest when one exists. Do not edit by hand.",
        "",
        "Test set: the 300-W common subset (Helen test + LFPW test, 554 faces), standard crops of the "
        "ground-truth landmark box. `nme_io`: percent, inter-ocular normalizer (outer eye corners 36-45); "
        "FR@0.10: share of faces with nme_io > 10 %; AUC@0.08: area under the CED up to 8 %, in [0, 1].",
        "",
        "## Models",
        "",
        "| model | nme_io % | FR@0.10 | AUC@0.08 | size | params | MACs | latency 1 thr | latency 2 thr | source |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "pending" in r:
            lines.append(f"| {r['model']} | pending: {r['pending']} |  |  |  |  |  |  |  |  |")
            continue
        lat = r.get("latency") or {}
        lines.append(
            f"| {r['model']} | {_fmt(r.get('nme_io'), '.2f')} | {_fmt(r.get('fr_010'), '.3f')} | "
            f"{_fmt(r.get('auc_008'), '.3f')} | {_fmt(r.get('bytes'), '.0f', 1 / 1024, ' KB')} | "
            f"{_fmt(r.get('params'), ',.0f')} | {_fmt(r.get('macs'), '.1f', 1e-6, ' M')} | "
            f"{_fmt(lat.get('1'), '.2f', suffix=' ms')} | {_fmt(lat.get('2'), '.2f', suffix=' ms')} | "
            f"{r['source']}{'; ' + r['caveat'] if r.get('caveat') else ''} |"
        )
    lines += [
        "",
        "Size: the checkpoint file for torch rows (training-only PFLD pose branch included), the artifact file "
        "for INT8 rows. Params and MACs: the inference path (`distill.prune.measure`; INT8 rows keep their FP32 "
        "model's MACs, as integer MACs). Latency: batch 1, model only, median, from `benchmarks/results/suite.json` "
        "(`python benchmarks/run_all.py`; the torch checkpoint it timed and the INT8 rows), on this shared 2-core CPU.",
        "",
    ]
    if figure:
        lines += ["## Cumulative error distribution", "", f"![CED on the 300-W common test set]({figure})", ""]
    else:
        lines += ["## Cumulative error distribution", "",
                  "pending: per-image errors (no checkpoint evaluated and no recipe `errors.json` found)", ""]
    lines += _manifest_section(manifest, manifest_path)
    lines += _suite_section(suite)
    lines += [
        "## Published reference points (quoted, not re-measured)",
        "",
        "| model | 300-W common nme_io % | size | note |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {p['model']} | {p['nme_io']} | {p['size']} | {p['note']} |" for p in PUBLISHED]
    lines += [
        "",
        "Our models differ from the published ones in training data (2,012 of the 3,148 300-W training faces are "
        "available here), budget (CPU, minutes to hours), and teacher size, so the comparison is indicative.",
        "",
        f"Regenerate: `{COMMAND}`",
        "",
    ]
    return "\n".join(lines)


def _manifest_section(manifest: dict[str, Any] | None, path: Path | None) -> list[str]:
    if manifest is None:
        return ["## Recipe run", "", "pending: a recipe folder's `manifest.json` "
                "(`python -m recipes run recipes/300w_pfld025.yaml --out runs/<name>`)", ""]
    lines = ["## Recipe run", "", f"`{shown_path(path)}`: recipe `{manifest['recipe']['name']}`, commit "
             f"`{str(manifest.get('git_commit'))[:12]}`, eval set `{manifest['eval_set'].get('name')}` "
             f"({manifest['eval_set'].get('count')} faces).", "",
             "| artifact | nme_io % | FR@0.10 | AUC@0.08 | size | params | latency | regression | verdict |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, ref in manifest.get("references", {}).items():
        lines.append(f"| {name} (reference) | {_fmt(ref.get('nme_io'), '.2f')} | {_fmt(ref.get('fr@0.10'), '.3f')} | "
                     f"{_fmt(ref.get('auc@0.08'), '.3f')} | - | {_fmt(ref.get('params'), ',.0f')} | - | - | - |")
    for a in manifest.get("artifacts", []):
        reg = a.get("regression")
        lines.append(f"| {a['name']} | {_fmt(a.get('nme_io'), '.2f')} | {_fmt(a.get('fr@0.10'), '.3f')} | "
                     f"{_fmt(a.get('auc@0.08'), '.3f')} | {_fmt(a.get('bytes'), '.0f', 1 / 1024, ' KB')} | "
                     f"{_fmt(a.get('params'), ',.0f')} | {_fmt(a.get('latency_ms'), '.2f', suffix=' ms')} | "
                     f"{_fmt(reg if isinstance(reg, float) else None, '+.2f', 100, ' %')} | {a.get('verdict')} |")
    return [*lines, ""]


def _suite_section(suite: dict[str, Any] | None) -> list[str]:
    if suite is None:
        return ["## Runtimes side by side", "", "pending: `benchmarks/results/suite.json` "
                "(`python benchmarks/run_all.py`)", ""]
    from benchmarks.run_all import LABELS

    lat = suite["latency_ms"]
    lines = ["## Runtimes side by side", "", f"From `benchmarks/results/suite.json` ({suite.get('source')}; "
             f"{suite.get('cpu')}). Latency relative to ONNX FP32 at the same thread count.", "",
             "| runtime | " + " | ".join(f"{t} thr ms | ratio" for t in lat) + " |",
             "|---|" + "---:|---:|" * len(lat)]
    for name in LABELS:
        if name not in next(iter(lat.values())):
            continue
        cells = " | ".join(f"{lat[t][name]:.2f} | x{lat[t][name] / lat[t]['onnx_fp32']:.2f}" for t in lat)
        lines.append(f"| {LABELS[name]} | {cells} |")
    tr = suite.get("training")
    if tr:
        lines += ["", "Training throughput (images/s, one optimizer step, "
                  f"{tr['threads']} threads): teacher {tr['teacher']['images_per_s']}, student "
                  f"{tr['student']['images_per_s']}, student + KD {tr['student_kd']['images_per_s']}."]
    sp = suite.get("synthetic")
    if sp:
        lines += ["", f"Synthetic face generation: {sp['images_per_s_cpu']} images/s per CPU-second at "
                  f"{sp['image_size']} px."]
    return [*lines, ""]


# ---------------------------------------------------------------------------- entry point


def build_page(sources: Sources, out_md: Path, out_png: Path, *, evaluate: bool = True,
               log: Callable[[str], None] = print) -> Path:
    """Collect every source that exists, write the CED figure (when there are curves) and the page."""
    manifest_path = find_manifest(sources)
    manifest = _load(manifest_path)
    rows, curves = headline_rows(sources, manifest, manifest_path, evaluate, log)
    figure = None
    if curves:
        from landmarks.plots import plot_ced

        plot_ced({k: np.asarray(v) for k, v in curves.items()}, out_png,
                 title="CED, 300-W common test set (nme_io)")
        figure = Path(os.path.relpath(Path(out_png).resolve(), Path(out_md).resolve().parent)).as_posix()
    suite = _load(sources.results / "suite.json")
    return write_text(out_md, render(rows, manifest, manifest_path, suite, figure, sources))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Sources.results, help="benchmark JSON folder")
    p.add_argument("--runs", type=Path, default=Sources.runs, help="run folders (checkpoints, recipe outputs)")
    p.add_argument("--manifest", type=Path, help="a recipe's manifest.json (default: newest runs/*/manifest.json)")
    p.add_argument("--data", type=Path, default=DATA, help="300-W crops, for evaluations")
    p.add_argument("--no-eval", action="store_true", help="do not evaluate checkpoints (no CED unless cached/recipe)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "RESULTS.md")
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "img" / "ced_300w.png")
    args = p.parse_args(argv)
    with cli_errors("results_page"):
        sources = Sources(results=args.results, runs=args.runs, manifest=args.manifest, data=args.data)
        path = build_page(sources, args.out, args.figure, evaluate=not args.no_eval)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
