"""`input_file` in a submission: a stored file named by content, checked field by field (docs/files.md)."""

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import validate_submission

SHA = "ab" * 32


def test_input_file_is_kept_in_params() -> None:
    spec = validate_submission({"scenario": "720p30", "input_file": {"sha256": SHA, "size": 9, "name": "c.mp4"}})
    assert spec.params["input_file"] == {"sha256": SHA, "size": 9, "name": "c.mp4"}
    assert spec.params["input"] is None


@pytest.mark.parametrize(("ref", "field"), [
    ("x", "input_file"),
    ({"sha256": SHA.upper(), "size": 1}, "input_file.sha256"),
    ({"sha256": SHA, "size": -1}, "input_file.size"),
    ({"sha256": SHA, "size": True}, "input_file.size"),
    ({"sha256": SHA, "size": 1, "name": "../x"}, "input_file.name"),
    ({"sha256": SHA, "size": 1, "name": "a\nb"}, "input_file.name"),
    ({"sha256": SHA, "size": 1, "path": "/etc"}, "input_file.path"),
])
def test_a_bad_input_file_names_its_field(ref: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_submission({"scenario": "720p30", "input_file": ref})
    assert caught.value.field == field


def test_input_and_input_file_exclude_each_other() -> None:
    with pytest.raises(InvalidInput, match="not both"):
        validate_submission({"scenario": "720p30", "input": "/in/a.mp4",
                             "input_file": {"sha256": SHA, "size": 1, "name": "a.mp4"}})
