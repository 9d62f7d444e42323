"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from landmarks.atomic import write_json, write_text


def cpu_name() -> str:
    """The processor's model name, for the header of a results table."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    """The instruction sets that decide INT8 speed on x86: AVX-512 VNNI, AVX-VNNI, AMX, else AVX2 only."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return platform.machine()
    found = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8", "avx512f", "avx2") if f" {f}" in flags]
    return ", ".join(found) or "no AVX2"


def shown_path(path: str | Path) -> str:
    """A path as a results file may show it: relative to the current folder or the data root
    (``$LANDMARKS_DATA``) when inside one, else its last two parts; never a machine's absolute path."""
    from landmarks.data.specs import dataset_name

    resolved = Path(path).resolve()
    if resolved.is_relative_to(Path.cwd()):
        return resolved.relative_to(Path.cwd()).as_posix()
    return dataset_name(path)


def save_results(folder: Path, name: str, payload: dict[str, Any], table: str, command: str | None = None) -> None:
    """The end of a benchmark: ``NAME.json`` (the numbers) and ``NAME.md`` (the table, ending with
    the command that made it when one is given) in ``folder``; the table is also printed."""
    if command is not None:
        table += f"\n\nCommand: `{command}`\n"
    write_json(folder / f"{name}.json", payload)
    write_text(folder / f"{name}.md", table)
    print(table)
