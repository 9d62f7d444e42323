"""Exit codes (landmarks/errors.py): 0 success, 1 rejected by the gate, 2 the user's error, 3 the tool's."""

from __future__ import annotations

import pytest

from landmarks.errors import (
    EXIT_INTERNAL,
    EXIT_REJECTED,
    EXIT_USAGE,
    ConfigError,
    GateRejected,
    InternalError,
    ModelError,
    cli_errors,
    step,
)


def _exit(body, tmp_path=None) -> int:
    with pytest.raises(SystemExit) as exc, cli_errors("prog") as errors:
        errors.folder = tmp_path
        body()
    return exc.value.code


def _raise(err: BaseException):
    def body():
        raise err

    return body


def test_each_kind_of_failure_has_its_own_code(tmp_path, capsys):
    assert _exit(_raise(ConfigError("bad flag"))) == EXIT_USAGE
    assert capsys.readouterr().err == "prog: error: bad flag\n"
    assert _exit(_raise(GateRejected("too slow a student"))) == EXIT_REJECTED
    assert capsys.readouterr().err == "prog: rejected: too slow a student\n"
    assert _exit(_raise(ZeroDivisionError("division by zero")), tmp_path) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prog: internal error: ZeroDivisionError: division by zero")
    log = (tmp_path / "error.log").read_text()
    assert "Traceback (most recent call last)" in log and "ZeroDivisionError" in log and "in body" in log


def test_a_step_names_itself_and_keeps_the_traceback(tmp_path, capsys):
    def body():
        with step("building a candidate"):
            [].pop()

    assert _exit(body, tmp_path) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("prog: internal error in building a candidate: IndexError: pop from empty list")
    assert f"(traceback: {tmp_path / 'error.log'})" in err
    assert "[].pop()" in (tmp_path / "error.log").read_text()  # the cause's frame, not only the wrapper's


def test_a_user_error_inside_a_step_stays_the_users_unless_the_files_are_the_tools(capsys):
    with pytest.raises(ModelError), step("reading the user's model"):
        raise ModelError("x.onnx: not an ONNX model")
    with pytest.raises(InternalError) as exc, step("checking the INT8 candidate", own_files=True):
        raise ModelError("candidate0.onnx: not a loadable ONNX model")
    assert exc.value.step == "checking the INT8 candidate"
    assert isinstance(exc.value.__cause__, ModelError)


def test_without_an_output_folder_the_traceback_goes_to_a_temp_file(capsys):
    from pathlib import Path

    assert _exit(_raise(KeyError("k"))) == EXIT_INTERNAL
    err = capsys.readouterr().err.strip()
    log = Path(err.rsplit("(traceback: ", 1)[1].rstrip(")"))
    try:
        assert "KeyError" in log.read_text()
    finally:
        log.unlink()
