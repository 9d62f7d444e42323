"""Regenerate the result tables of the README and docs/EXPERIMENTS.md from the files that hold the
results (never typed).

* README ``<!-- shipped:begin -->`` ... ``<!-- shipped:end -->``: the shipped models, from
  ``landmarks/zoo/manifest.json`` (``python -m landmarks.zoo publish RUN_DIR``), with their 1-thread
  latency from ``benchmarks/results/int8_speed.json`` (``python benchmarks/int8_speed.py``);
* docs/EXPERIMENTS.md ``<!-- gap:begin -->`` ... ``<!-- gap:end -->``: the 300-W distillation
  table, from ``benchmarks/results/distill_gap.json`` (``python benchmarks/distill_gap.py collect``).

    python benchmarks/readme_tables.py            # rewrite both files in place
    python benchmarks/readme_tables.py --check    # exit 1 if either is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXPERIMENTS = ROOT / "docs" / "EXPERIMENTS.md"
ZOO_MANIFEST = ROOT / "landmarks" / "zoo" / "manifest.json"
GAP = ROOT / "benchmarks" / "results" / "distill_gap.json"
SPEED = ROOT / "benchmarks" / "results" / "int8_speed.json"


def _pct(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None else f"{value:{spec}}"


def _one_thread(speed: dict[str, Any] | None) -> tuple[str, dict[str, str]]:
    """The shipped files' batch-1 latency on 1 thread, timed side by side in one run by
    ``benchmarks/int8_speed.py`` (the manifest's own latency is the recipe machine's, on its gate threads)."""
    if not speed:
        return "latency (batch 1)", {}
    base = speed["latency_fp32_onnx_ms"]
    times = {Path(speed["model"]).name: base}
    times |= {name.removeprefix("shipped "): ms for name, ms in speed.get("shipped", {}).items()}
    cells = {name: f"{ms:.2f} ms (x{base / ms:.2f})" for name, ms in times.items()}
    return f"latency, batch 1, 1 thread, {speed['cpu']} (speed vs FP32 ONNX)", cells


def shipped_table(zoo: dict[str, Any], speed: dict[str, Any] | None = None) -> str:
    header, one_thread = _one_thread(speed)
    lines = [
        f"Recipe `{zoo['recipe']['file']}`, code commit `{zoo['git_commit'][:12]}`; test set "
        f"`{', '.join(item.split('300w/', 1)[-1] for item in zoo['eval_set']['name'].split(','))}` "
        f"({zoo['eval_set']['count']} faces, 300-W common). Total {zoo['total_bytes'] / 1e6:.2f} MB; "
        "details in [landmarks/zoo/MODEL_CARD.md](landmarks/zoo/MODEL_CARD.md).",
        "",
        "| file | format | precision | size | nme_io % | vs its reference | vs the distilled student | "
        f"{header} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in zoo["artifacts"]:
        regression = f.get("regression")
        reg = f"{100 * regression:+.2f} % vs {f.get('reference')}" if isinstance(regression, float) else "–"
        chain = f.get("chain_regression")
        chain = f"{100 * chain:+.2f} %" if isinstance(chain, float) else "–"
        latency = one_thread.get(f["file"]) or (f"{f['latency_ms']:.2f} ms ({f.get('latency_threads')} threads)"
                                                if f.get("latency_ms") is not None else "–")
        default = " (default)" if f["file"] == zoo["default"] else ""
        lines.append(f"| `{f['file']}`{default} | {f['format']} | {f['precision']} | {f['bytes'] / 1024:.0f} KB | "
                     f"{_pct(f.get('nme_io'))} | {reg} | {chain} | {latency} |")
    return "\n".join(lines)


def _verdict(gap: dict[str, Any], artifact: str) -> str:
    verdict = (gap.get("int8_verdicts") or {}).get(artifact)
    return f", gate {verdict}" if verdict else ""


def gap_table(gap: dict[str, Any]) -> str:
    kd, no_kd = gap["student_kd_nme_io"], gap.get("student_no_kd_nme_io")
    gain = gap.get("kd_relative_gain")
    lines = [
        "| model (300-W common test, 554 faces) | nme_io % | made by |",
        "|---|---|---|",
        f"| teacher FAN ({gap['teacher_label']}) | {_pct(gap['teacher_nme_io'])} | recipe |",
        f"| student pfld025 + KD | {_pct(kd)} | recipe |",
        f"| student pfld025, no KD, same budget | {_pct(no_kd)} | "
        f"{gap.get('student_no_kd_from') or '`benchmarks/distill_gap.py arms`'} |",
        f"| KD {gap.get('student_pruned_label', 'student, 30 % pruned + KD recovery')} (torch) | "
        f"{_pct(gap.get('student_pruned_nme_io'))} | recipe |",
        f"| INT8 ONNX ({(gap.get('int8_onnx_bytes') or 0) / 1024:.0f} KB) | "
        f"{_pct(gap.get('student_int8_onnx_nme_io'))} | recipe{_verdict(gap, 'onnx_int8')} |",
        f"| INT8 TFLite ({(gap.get('int8_tflite_bytes') or 0) / 1024:.0f} KB) | "
        f"{_pct(gap.get('student_int8_tflite_nme_io'))} | recipe{_verdict(gap, 'tflite_int8')} |",
        "",
        f"Student / teacher {gap['student_teacher_ratio']:.2f}"
        + (f"; KD gain over no KD {100 * gain:.1f} %" if gain is not None else "")
        + f"; training throughput (student + KD) {gap['train_images_per_s_before']:.0f} -> "
        f"{gap['train_images_per_s_after']:.0f} images/s"
        + (f" ({gap['train_images_per_s_from']})" if gap.get("train_images_per_s_from") else "")
        + (f"; the recipe ran {gap['recipe_wall_s'] / 60:.0f} min from scratch" if gap.get("recipe_wall_s") else "")
        + (f" ({gap['recipe_wall_note']})" if gap.get("recipe_wall_note") else "")
        + ". Validation: " + gap["validation_split"] + ".",
    ]
    arms = gap.get("unlabeled_arms") or {}
    if arms:
        lines += ["", "| data arm (KD, the same optimizer steps each) | student epochs | teacher | feature KD weight "
                  "| val nme_io % | test nme_io % | made by |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {a['epochs']} | {a.get('teacher') or '–'} | {a.get('feature_weight') or '–'} | "
                  f"{_pct(a['val_nme_io'])} | {_pct(a['test_nme_io'])} | "
                  f"{a.get('from', '`benchmarks/distill_gap.py arms`')} |" for name, a in arms.items()]
    tuning = gap.get("kd_tuning")
    if tuning:
        lines += ["", f"| KD setting ({tuning['epochs']} epochs, validation only) | gt / output / feature | lr | loss "
                  "| val nme_io % |", "|---|---|---|---|---|"]
        lines += [f"| {r['name']}{' (chosen)' if r['name'] == tuning['best'] else ''} | {r['gt_weight']:g} / "
                  f"{r['output_weight']:g} / {r['feature_weight']:g} | {r['lr']:g} | {r.get('loss', 'pfld')} | "
                  f"{_pct(r['val_nme_io'])} |" for r in tuning["settings"]]
    return "\n".join(lines)


def _replace(text: str, block: str, body: str, name: str) -> str:
    pattern = re.compile(rf"(<!-- {block}:begin -->\n).*?(\n<!-- {block}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{name} has no <!-- {block}:begin --> ... <!-- {block}:end --> block")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def render(path: Path, text: str) -> str:
    if path == README and ZOO_MANIFEST.is_file():
        speed = json.loads(SPEED.read_text()) if SPEED.is_file() else None
        text = _replace(text, "shipped", shipped_table(json.loads(ZOO_MANIFEST.read_text()), speed), path.name)
    if path == EXPERIMENTS and GAP.is_file():
        text = _replace(text, "gap", gap_table(json.loads(GAP.read_text())), path.name)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="exit 1 when a file differs from what it would be")
    args = p.parse_args()
    stale = []
    for path in (README, EXPERIMENTS):
        current = path.read_text()
        new = render(path, current)
        if new == current:
            continue
        stale.append(path.relative_to(ROOT).as_posix())
        if not args.check:
            sys.path.insert(0, str(ROOT))
            from landmarks.atomic import write_text

            write_text(path, new)
    if args.check and stale:
        print(f"{', '.join(stale)}: tables out of date; run python benchmarks/readme_tables.py")
        return 1
    print("README.md and docs/EXPERIMENTS.md tables up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
