"""Property-based: schemathesis drives every operation of /api/openapi.json against a live master; no answer
is a 5xx, and every answer conforms to the document (status, content type, body schema)."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.httpapi import http_master  # noqa: E402
from tests.test_http_api import NULL_JOB, make_keys  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("schema")
    (admin,) = make_keys(root, ("admin", "default"))
    with http_master(root, master={"files_port": -1}) as (_, curl):
        for _ in range(3):  # something to list, show and cancel
            assert curl.post("/api/jobs", key=admin, body=NULL_JOB).status == 201
        context = ssl.create_default_context(cafile=str(curl.cacert))
        with urllib.request.urlopen(curl.base + "/api/openapi.json", context=context) as answer:  # noqa: S310
            document = json.load(answer)
        yield {"base": curl.base, "cacert": str(curl.cacert), "key": admin, "document": document}


def test_the_server_keeps_to_its_openapi_document(live_api: dict[str, Any]) -> None:
    """Each operation in turn (hypothesis drives schemathesis' strategies directly: its pytest plugin does not
    yet run on this pytest)."""
    api = schemathesis.openapi.from_dict(live_api["document"])
    headers = {"Authorization": f"Bearer {live_api['key']}"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    labels = []
    for result in api.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def conforms(case: Any) -> None:
            if case.query and str(case.query.get("follow")) == "1":
                return  # a follow streams until its job ends: its events are tested in test_http_follow.py
            case.call_and_validate(base_url=live_api["base"], headers=headers, verify=live_api["cacert"],
                                   timeout=20, checks=checks)

        conforms()
    assert len(labels) == 17, labels
