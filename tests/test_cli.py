"""What every command shares (landmarks/cli.py): ``--version``, and options with one name and default."""

from __future__ import annotations

import argparse
import importlib

import pytest

from landmarks import __version__

COMMANDS = {  # module with build_parser() and main(), and the console script of the same job (pyproject.toml)
    "landmarks.data.__main__": "landmarks-data",
    "landmarks.eval": "landmarks-eval",
    "landmarks.predict": "landmarks-predict",
    "landmarks.zoo.__main__": None,
    "distill.__main__": "landmarks-distill",
    "distill.prune.cli": "landmarks-prune",
    "export.__main__": "landmarks-export",
    "export.describe": "landmarks-describe",
    "quant.ptq": "landmarks-ptq",
    "recipes.__main__": "landmarks-recipes",
}


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_answers_version_with_exit_0(module, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip().endswith(f"(edge-landmarks {__version__})")


def _options(module: str) -> dict[str, argparse.Action]:
    parser = importlib.import_module(module).build_parser()
    actions = {a.dest: a for a in parser._actions}
    for sub in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
        for child in sub.choices.values():
            actions |= {a.dest: a for a in child._actions}
    return actions


@pytest.mark.parametrize("module", COMMANDS)
def test_shared_options_have_one_name_and_default(module):
    actions = _options(module)
    assert "no_progress" not in actions  # one spelling: --progress / --no-progress
    if "threads" in actions:
        assert actions["threads"].default is None and actions["threads"].option_strings == ["--threads"]
    if "progress" in actions:
        assert isinstance(actions["progress"], argparse.BooleanOptionalAction) and actions["progress"].default is None
    if "seed" in actions:
        assert actions["seed"].default == 0
    if "device" in actions:
        assert actions["device"].default == "auto" and tuple(actions["device"].choices) == ("auto", "cpu", "cuda")
    if "data" in actions and module.startswith("distill"):
        assert actions["data"].default == "synthetic"


def test_the_version_is_one_string():
    import importlib.metadata
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert importlib.metadata.version("edge-landmarks") == __version__
    assert re.search(rf"^## {re.escape(__version__)}\b", (root / "CHANGELOG.md").read_text(), re.M)
    assert 'dynamic = ["version"]' in (root / "pyproject.toml").read_text()
