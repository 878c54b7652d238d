"""The process logs of master and worker: text and JSON lines, with job, attempt and node."""

from __future__ import annotations

import json
import logging

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.logsetup import JsonFormatter, TextFormatter, setup_logging


def record(**extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("ffrtmp.master", logging.WARNING, __file__, 1, "job %s failed", ("abc",), None)
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_json_lines_carry_job_attempt_and_node() -> None:
    line = json.loads(JsonFormatter().format(record(job="abc", attempt=2, node="gpu-1")))
    assert line["message"] == "job abc failed" and line["level"] == "warning" and line["logger"] == "ffrtmp.master"
    assert (line["job"], line["attempt"], line["node"]) == ("abc", 2, "gpu-1")
    assert line["time"].endswith("Z")


def test_text_lines_name_the_context_when_there_is_one() -> None:
    assert TextFormatter().format(record(job="abc", node="n1")).endswith("job abc failed [job=abc node=n1]")
    assert TextFormatter().format(record()).endswith("job abc failed")


def test_bad_level_or_format_names_the_option() -> None:
    with pytest.raises(InvalidInput, match="log-format"):
        setup_logging("info", "xml")
    with pytest.raises(InvalidInput, match="log-level"):
        setup_logging("loud", "text")
