"""The job spec's file fields: `input_file` (a stored file) and `upload` (the client's instruction)."""

from __future__ import annotations

from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import validate_submission

SHA = "ab" * 32
GOOD = {"sha256": SHA, "size": 1234, "name": "clip.mp4"}


def field_of(**given: Any) -> str:
    with pytest.raises(InvalidInput) as info:
        validate_submission({"scenario": "test1", **given})
    return info.value.field


def test_an_input_file_is_kept_in_the_params() -> None:
    spec = validate_submission({"scenario": "test1", "input_file": dict(GOOD)})
    assert spec.params["input_file"] == GOOD
    assert spec.params["input"] is None


def test_a_job_without_one_has_no_input_file_param() -> None:
    assert "input_file" not in validate_submission({"scenario": "test1"}).params


@pytest.mark.parametrize(("value", "field"), [
    ("clip.mp4", "input_file"),
    ({**GOOD, "sha256": "AB" * 32}, "input_file.sha256"),
    ({**GOOD, "sha256": "ab" * 31}, "input_file.sha256"),
    ({**GOOD, "sha256": None}, "input_file.sha256"),
    ({**GOOD, "size": -1}, "input_file.size"),
    ({**GOOD, "size": True}, "input_file.size"),
    ({**GOOD, "size": 1.5}, "input_file.size"),
    ({**GOOD, "size": 2**64}, "input_file.size"),
    ({**GOOD, "name": ""}, "input_file.name"),
    ({**GOOD, "name": "a/b.mp4"}, "input_file.name"),
    ({**GOOD, "name": ".."}, "input_file.name"),
    ({**GOOD, "name": "a\nb"}, "input_file.name"),
    ({**GOOD, "name": "x" * 256}, "input_file.name"),
    ({"sha256": SHA, "size": 1}, "input_file.name"),
    ({**GOOD, "path": "/etc/passwd"}, "input_file.path"),
])
def test_a_bad_input_file_names_its_field(value: Any, field: str) -> None:
    assert field_of(input_file=value) == field


def test_input_and_input_file_together_are_refused() -> None:
    assert field_of(input="in.mp4", input_file=GOOD) == "input_file"


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_upload_modes_are_accepted_and_not_kept(mode: str) -> None:
    spec = validate_submission({"scenario": "test1", "input": "in.mp4", "upload": mode})
    assert "upload" not in spec.to_dict() and "upload" not in spec.params


@pytest.mark.parametrize("mode", ["yes", "", None, 1, "AUTO"])
def test_a_bad_upload_mode_names_the_field(mode: Any) -> None:
    if mode is None:
        validate_submission({"scenario": "test1", "upload": mode})  # None means "not given", as for every field
        return
    assert field_of(upload=mode) == "upload"
