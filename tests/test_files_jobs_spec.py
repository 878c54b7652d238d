"""The job spec's `upload` field: the client's instruction for a local input, checked and never kept.

(`input_file` itself is covered in tests/test_files_jobspec.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

from ffrtmp.errors import InvalidInput
from ffrtmp.jobspec import validate_submission


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_upload_modes_are_accepted_and_not_kept(mode: str) -> None:
    spec = validate_submission({"scenario": "test1", "input": "in.mp4", "upload": mode})
    assert "upload" not in spec.to_dict() and "upload" not in spec.params
    assert spec.params["input"] == "in.mp4"


@pytest.mark.parametrize("mode", ["yes", "", 1, True, "AUTO", ["auto"]])
def test_a_bad_upload_mode_names_the_field(mode: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_submission({"scenario": "test1", "upload": mode})
    assert caught.value.field == "upload"
    assert "auto, always, never" in caught.value.problem
