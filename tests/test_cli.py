"""How every job fails (pipeline.cli.run_tool): one line on stderr and an exit code; the index
and training jobs also log an unexpected failure's traceback, without credentials."""

from __future__ import annotations

import logging

from pipeline.cli import EXIT_FAILURE, EXIT_USAGE, run_tool
from pipeline.config import ConfigError


def boom() -> int:
    raise RuntimeError("lost s3://key:secret@bucket/out")


def test_an_unexpected_failure_is_one_line_and_exit_1(capsys, caplog):
    with caplog.at_level(logging.ERROR):
        assert run_tool("reelay query", boom) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "reelay query: error: unexpected RuntimeError: lost s3://***@bucket/out"
    ]
    assert "Traceback" not in caplog.text


def test_a_job_logs_the_traceback_of_an_unexpected_failure(capsys, caplog):
    with caplog.at_level(logging.ERROR):
        assert run_tool("reelay index", boom, log_traceback=True) == EXIT_FAILURE
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert "Traceback" in caplog.text and "in boom" in caplog.text
    assert "secret" not in caplog.text


def test_a_usage_error_is_exit_2_without_a_traceback(capsys, caplog):
    def bad() -> int:
        raise ConfigError("--fps must be > 0 (got 0)")

    with caplog.at_level(logging.ERROR):
        assert run_tool("reelay index", bad, (ConfigError,), log_traceback=True) == EXIT_USAGE
    assert capsys.readouterr().err == "reelay index: error: --fps must be > 0 (got 0)\n"
    assert caplog.text == ""
