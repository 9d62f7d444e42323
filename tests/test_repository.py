"""What the repository itself promises: no committed file names a path of the machine it was made on."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = "../" + "shared"  # the development machines' data folder (README, "Working on this repository")
DEVELOPMENT_SECTION = "## Working on this repository"


def _tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in listed:
        path = REPO / name
        if path.is_file() and b"\0" not in path.read_bytes()[:4096]:
            files.append(path)
    return files


def test_no_file_names_a_machine_path_or_the_shared_data_folder():
    machine = f"{REPO.parent}/"
    found = []
    for path in _tracked_text_files():
        text = path.read_text(errors="replace")
        if path == REPO / "README.md":
            text = text.split(DEVELOPMENT_SECTION)[0]
        for number, line in enumerate(text.splitlines(), 1):
            if machine in line or SHARED in line:
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert found == []


def test_the_shipped_manifest_names_datasets_by_name_and_hash():
    import json

    manifest = json.loads((REPO / "landmarks" / "zoo" / "manifest.json").read_text())
    for role, items in manifest["datasets"].items():
        for item in items:
            assert not Path(item["name"]).is_absolute() and ".." not in Path(item["name"]).parts, (role, item)
            assert item["content_hash"] is None or len(item["content_hash"]) == 64


def test_the_readme_is_a_user_guide():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250
