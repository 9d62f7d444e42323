"""The speed policy: keep a kind of layer in float where INT8 is measured slower on the target.

Whether INT8 is faster depends on the kernel and the CPU: on x86 without VNNI, onnxruntime's u8s8
depthwise and 3-channel convolutions run slower than FP32, and every float/INT8 boundary costs a
conversion. So the policy measures, never guesses:

* **here** (the quantizing machine is the target): for each kind of layer
  (:data:`quant.profile.KINDS`: depthwise, pointwise expand, first conv, ...), a candidate with that
  kind in float is built from the one calibration and timed against the all-INT8 candidate, batch 1,
  in interleaved rounds, in the runtime that ships it. The gain is the median over rounds of the
  paired difference (a round of each model, back to back), which a load that comes and goes on the
  machine affects alike; the kinds that save more than :data:`MIN_GAIN` stay float, and the
  combination is timed once more against the all-INT8 one (kept only if it saves more still);
* **from a timing file** written on the target by ``python -m quant.profile FP32 INT8 --out FILE``
  (onnxruntime's per-kind kernel times of the FP32 model and its all-INT8 twin): the kinds whose
  INT8 kernels took longer than their FP32 ones stay float.

The accuracy gate decides afterwards, as for any candidate: a faster model that loses too much is
still rejected (or gets more nodes in float from the fallback).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landmarks.errors import ConfigError

POLICIES = ("size", "speed")
MIN_GAIN = 0.03  # a kind in float must save 3 % of the all-INT8 latency: below that is timing noise
POLICY_KINDS = ("first conv", "depthwise conv", "pointwise expand", "pointwise project", "conv", "add",
                "fully connected")


@dataclass(frozen=True)
class SpeedChoice:
    """What the speed policy measured and chose; ``rows`` become the report's table."""

    float_kinds: tuple[str, ...] = ()
    float_nodes: tuple[str, ...] = ()
    source: str = ""  # "measured here" or the timing file
    rows: tuple[dict[str, Any], ...] = ()
    all_int8_ms: float | None = None
    chosen_ms: float | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"float_kinds": list(self.float_kinds), "float_nodes": len(self.float_nodes), "source": self.source,
                "rows": list(self.rows), "all_int8_ms": self.all_int8_ms, "chosen_ms": self.chosen_ms,
                "notes": list(self.notes)}


def choose_by_measurement(
    kind_nodes: dict[str, tuple[str, ...]],
    build: Callable[[tuple[str, ...]], Path],
    all_int8: Path,
    time: Callable[[Sequence[Path]], list[list[float]]],
    log: Callable[[str], None] = print,
) -> SpeedChoice:
    """Each kind in float against the all-INT8 candidate, timed side by side; see the module docstring.

    ``time(paths)`` returns, for each model, its median batch-1 latency (ms) in each round of one
    interleaved run.
    """
    kinds = [k for k in POLICY_KINDS if kind_nodes.get(k)]
    if not kinds:
        return SpeedChoice(source="measured here", notes=("no layer of a known kind to keep in float",))
    candidates = [build(kind_nodes[k]) for k in kinds]
    base_rounds, *alone = time([all_int8, *candidates])
    base = _median(base_rounds)
    rows = []
    chosen = []
    for kind, rounds in zip(kinds, alone, strict=True):
        gain = paired_gain(base_rounds, rounds)
        rows.append({"kind": kind, "layers": len(kind_nodes[kind]), "all_int8_ms": round(base, 4),
                     "kind_in_float_ms": round(_median(rounds), 4), "gain": round(gain, 4)})
        if gain > MIN_GAIN:
            chosen.append(kind)
    if not chosen:
        log("speed policy: INT8 is at least as fast as float for every kind of layer; all INT8")
        return SpeedChoice(source="measured here", rows=tuple(rows), all_int8_ms=base, chosen_ms=base)
    nodes = tuple(n for k in chosen for n in kind_nodes[k])
    if len(chosen) > 1:
        combined = build(nodes)
        again, together = time([all_int8, combined])
        best = max(chosen, key=lambda k: next(r["gain"] for r in rows if r["kind"] == k))
        gain = paired_gain(again, together)
        best_gain = next(r["gain"] for r in rows if r["kind"] == best)
        if gain <= max(MIN_GAIN, best_gain):  # the kinds' savings did not add up: the best one alone
            chosen, nodes = [best], kind_nodes[best]
        else:
            base = _median(again)
            rows.append({"kind": " + ".join(chosen), "layers": len(nodes), "all_int8_ms": round(base, 4),
                         "kind_in_float_ms": round(_median(together), 4), "gain": round(gain, 4)})
    chosen_ms = next(r["kind_in_float_ms"] for r in reversed(rows) if r["kind"] == " + ".join(chosen))
    log(f"speed policy: {', '.join(chosen)} in float ({len(nodes)} layers): {chosen_ms:.3f} ms against "
        f"{base:.3f} ms all-INT8, measured here")
    return SpeedChoice(tuple(chosen), tuple(nodes), "measured here", tuple(rows), base, chosen_ms)


def paired_gain(base_rounds: Sequence[float], candidate_rounds: Sequence[float]) -> float:
    """The median over rounds of ``(base - candidate) / base``: positive when the candidate is faster."""
    gains = sorted((b - c) / b for b, c in zip(base_rounds, candidate_rounds, strict=True) if b > 0)
    return _median(gains) if gains else 0.0


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return float(ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2)


def choose_from_timings(path: str | os.PathLike[str], kind_nodes: dict[str, tuple[str, ...]],
                        log: Callable[[str], None] = print) -> SpeedChoice:
    """Kinds whose INT8 kernels were slower than FP32 in a ``quant.profile`` timing file from the target."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        fp32, int8 = _fp32_and_int8(data["profiles"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: not a timing file of python -m quant.profile FP32 INT8 --out FILE ({err})") \
            from err
    rows, chosen = [], []
    for kind in POLICY_KINDS:
        if kind not in fp32 or kind not in int8 or not kind_nodes.get(kind):
            continue
        rows.append({"kind": kind, "layers": len(kind_nodes[kind]), "fp32_us": fp32[kind], "int8_us": int8[kind]})
        if int8[kind] > fp32[kind]:
            chosen.append(kind)
    nodes = tuple(n for k in chosen for n in kind_nodes[k])
    log(f"speed policy from {path.name}: {', '.join(chosen) or 'no kind'} in float (INT8 slower there)")
    return SpeedChoice(tuple(chosen), nodes, str(path.name), tuple(rows))


def _fp32_and_int8(profiles: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """The two profiles of a timing file: the one whose model has QDQ/QLinear kernels is the INT8 one."""
    if len(profiles) != 2:
        raise ValueError(f"expected the profiles of two models (FP32 and INT8), found {len(profiles)}")
    (a, pa), (b, pb) = profiles.items()
    int8_first = _is_int8(pa) and not _is_int8(pb)
    if not int8_first and not (_is_int8(pb) and not _is_int8(pa)):
        raise ValueError(f"cannot tell which of {a} and {b} is the INT8 model")
    int8, fp32 = (pa, pb) if int8_first else (pb, pa)
    return {k: float(v) for k, v in fp32["kinds"].items()}, {k: float(v) for k, v in int8["kinds"].items()}


def _is_int8(profile: dict[str, Any]) -> bool:
    return any(str(node.get("op", "")).startswith(("QLinear", "Quantize", "Dequantize"))
               for node in profile.get("nodes", {}).values())


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ConfigError(f"precision policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    return policy
