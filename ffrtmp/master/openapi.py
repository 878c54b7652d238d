"""The HTTP API's OpenAPI 3.1 contract (`GET /api/openapi.json`), kept beside the routes it describes
(http_routes.py); tests/test_http_schema.py checks the server against it."""

from __future__ import annotations

from typing import Any

from ffrtmp import __version__
from ffrtmp.jobspec import QUALITY_MODES
from ffrtmp.master.requests import STATUSES
from ffrtmp.master.store.report import GROUPINGS

_ERROR = {"$ref": "#/components/schemas/Error"}
_OBJECT: dict[str, Any] = {"type": "object"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {400: "a field is wrong (named in `field`)", 401: "the API key is missing, wrong or revoked",
               403: "the key's role may not do this", 404: "no such job or file (or another tenant's)",
               409: "the job's state forbids it, or an upload resumes elsewhere (see Upload-Offset)",
               411: "an upload without a Content-Length", 416: "the Range is past the file's end",
               422: "the bytes do not hash to the sha256 named: nothing was stored",
               429: "rate limited or over a quota (see Retry-After)",
               503: "the master is busy, stuck or its store is full (see Retry-After)",
               507: "the file store is full (--files-max-bytes) or cannot be written"}
    return {str(status): _json(_ERROR, meaning[status]) for status in statuses}


_COMMON = (401, 403, 429, 503)
_JOB_ID = {"name": "id", "in": "path", "required": True, "description": "A job id, or a unique prefix of one",
           "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[A-Za-z0-9_-]+$"}}


_SHA256 = {"name": "sha256", "in": "path", "required": True, "description": "The file's SHA-256 (its name)",
           "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
_FILE_REF = {"$ref": "#/components/schemas/FileRef"}
_BINARY = {"type": "string", "format": "binary"}
_UPLOAD_OFFSET = {"Upload-Offset": {"description": "bytes of this tenant's partial upload: resume there",
                                    "schema": {"type": "integer", "minimum": 0}}}
_RANGE = {"name": "Range", "in": "header", "required": False, "description": "one span: bytes=A-B, bytes=A-, bytes=-N",
          "schema": {"type": "string", "pattern": "^bytes=[0-9]{0,12}-[0-9]{0,12}$"}}


def _download(summary: str, *params: dict[str, Any]) -> dict[str, Any]:
    """GET and HEAD of a stored file: the bytes (or one Range of them), or only their headers."""
    headers = {name: {"schema": {"type": "string"}} for name in ("ETag", "Content-Disposition", "Accept-Ranges")}
    get = _op(summary, {
        "200": {"description": "the file", "headers": headers, "content": {"application/octet-stream": {
            "schema": _BINARY}}},
        "206": {"description": "the span asked for (Content-Range)", "headers": headers,
                "content": {"application/octet-stream": {"schema": _BINARY}}}},
        400, 404, 416, *_COMMON, parameters=[*params, _RANGE])
    responses: dict[str, Any] = {str(status): {"description": text} for status, text in (
        (200, "held: its Content-Length, ETag, Content-Disposition"), (206, "the span's headers"),
        (400, "a field is wrong"), (401, "the API key is missing, wrong or revoked"),
        (403, "the key's role may not read"), (416, "the Range is past the file's end"),
        (429, "rate limited"), (503, "the master is busy or a standby"))}  # a HEAD answer has no body
    responses["404"] = {"description": "not held (a partial upload: its Upload-Offset)", "headers": _UPLOAD_OFFSET}
    return {"get": get, "head": {"summary": summary + " (headers only)", "parameters": [*params, _RANGE],
                                 "responses": responses}}


_FILE_NAME = r"^(?!\.\.?$)[^\x00-\x1f\x7f/]*$"
"""filedesk.file_name's rule: a file name, not a path (nor `.`, `..`), without control characters."""


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _op(summary: str, ok: dict[str, Any], *errors: int, auth: bool = True, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **_errors(*errors)}, **extra}
    if not auth:
        op["security"] = []
    return op


_REPORT_QUERY = [
    _query("by", {"type": "string", "enum": list(GROUPINGS)}, "what a row groups by (default scenario)"),
    _query("since", {"type": "number", "exclusiveMinimum": 0}, "only jobs of the last N seconds"),
    _query("group", {"type": "string", "minLength": 1, "maxLength": 256}, "one sweep's jobs"),
    _query("points", {"type": "string", "enum": ["0", "1", "true", "false"]}, "1: each job's rate-quality point"),
]
_RECOMMEND_QUERY = [
    {**_query("resolution", {"type": "string"}, "WIDTHxHEIGHT the encodes were made at"), "required": True},
    {**_query("fps", {"type": "integer", "minimum": 1, "maximum": 240}, "their frame rate"), "required": True},
    _query("target_vmaf", {"type": "number"}, "the VMAF to reach (give this or target_psnr)"),
    _query("target_psnr", {"type": "number"}, "the PSNR (dB) to reach"),
    _query("codec", {"type": "string"}, "only this codec or encoder"),
]


def document() -> dict[str, Any]:
    job_ref = {"$ref": "#/components/schemas/Job"}
    ids = {"type": "object", "required": ["ids"],
           "properties": {"ids": {"type": "array", "items": {"type": "string"}}, "repeated": {"type": "boolean"}}}
    action = {"type": "object", "required": ["id", "status"],
              "properties": {"id": {"type": "string"}, "status": {"type": "string"}, "changed": {"type": "boolean"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ffrtmp master HTTP API", "version": __version__,
                 "description": "JSON over HTTPS. Errors are {\"error\": ..., \"field\": ...}."},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": _op("Liveness of the master's loop (no API key needed)", {
                "200": _json({"$ref": "#/components/schemas/Health"}, "the loop runs"),
                "503": _json({"$ref": "#/components/schemas/Health"}, "the loop has not turned for seconds")},
                auth=False)},
            "/api/openapi.json": {"get": _op("This document", {"200": _json(_OBJECT, "OpenAPI 3.1")}, auth=False)},
            "/api/jobs": {
                "get": _op("Jobs, newest first, one page at a time (follow `next` as `cursor`)", {
                    "200": _json({"type": "object", "required": ["jobs", "next"], "properties": {
                        "jobs": {"type": "array", "items": job_ref},
                        "next": {"type": ["integer", "null"]}}}, "a page of jobs")}, 400, *_COMMON,
                    parameters=[
                        _query("status", {"type": "string", "enum": list(STATUSES)}, "only jobs in this state"),
                        _query("queue", {"type": "string"}, "only jobs of this queue"),
                        _query("node", {"type": "string"}, "only jobs placed on this node"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 100000}, "page size"),
                        _query("cursor", {"type": "integer", "minimum": 0}, "`next` of the previous page")]),
                "post": _op("Submit one job, a list of jobs, or {jobs, idempotency_key}", {
                    "201": _json(ids, "the new jobs' ids, in order")}, 400, *_COMMON,
                    parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                                 "schema": {"type": "string", "maxLength": 200},
                                 "description": "a repeated submit with this key answers the first one's ids"}],
                    requestBody={"required": True, "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/JobSpec"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/JobSpec"}, "minItems": 1},
                        {"type": "object", "required": ["jobs"], "properties": {
                            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/JobSpec"}},
                            "idempotency_key": {"type": "string"}}}]}}}}),
            },
            "/api/jobs/{id}": {"get": _op("One job as `ffrtmp jobs show --json` prints it", {
                "200": _json(job_ref, "the job")}, 400, 404, *_COMMON, parameters=[_JOB_ID])},
            "/api/jobs/{id}/cancel": {"post": _op("Cancel a job (a finished one is left as it is)", {
                "200": _json(action, "the job's state now")}, 400, 404, *_COMMON, parameters=[_JOB_ID])},
            "/api/jobs/{id}/retry": {"post": _op("Run a failed or canceled job again", {
                "200": _json(action, "the job is pending")}, 400, 404, *_COMMON, parameters=[_JOB_ID])},
            "/api/jobs/{id}/logs": {"get": _op("A job's log; with follow=1 Server-Sent Events until it ends", {
                "200": {"description": "the stored lines, or (follow) events `line`, `status`, `end`, `error`",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Logs"}},
                                    "text/event-stream": {"schema": {"type": "string"}}}}},
                400, 404, *_COMMON, parameters=[
                    _JOB_ID,
                    _query("attempt", {"oneOf": [{"type": "integer", "minimum": 1}, {"const": "all"}]},
                           "one attempt, or all (default: the latest)"),
                    _query("tail", {"type": "integer", "minimum": 0, "maximum": 1000000}, "the last N lines"),
                    _query("follow", {"type": "string", "enum": ["0", "1"]}, "1: stream until the job ends")])},
            "/api/jobs/{id}/output": _download(
                "The job's stored output file (which=input: its stored input), with Range", _JOB_ID,
                _query("which", {"type": "string", "enum": ["output", "input"]}, "output (default) or input")),
            "/api/files/{sha256}": {
                **_download("A stored file of the caller's tenant, with Range", _SHA256),
                "put": _op("Store a file by its SHA-256; Content-Range resumes a partial upload", {
                    "200": _json(_FILE_REF, "the tenant holds it already: nothing was read"),
                    "201": _json(_FILE_REF, "stored: its bytes hash to the name"),
                    "202": {"description": "a part stored; send the rest from Upload-Offset", "headers": _UPLOAD_OFFSET,
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FilePart"}}}}},
                    400, 404, 409, 411, 422, *_COMMON, 507, parameters=[
                        _SHA256, _query("name", {"type": "string", "maxLength": 255, "pattern": _FILE_NAME},
                                        "the file's name, as `jobs fetch` writes it: no path, no control characters"),
                        {"name": "Content-Range", "in": "header", "required": False,
                         "description": "bytes START-END/TOTAL: this body is that span of a TOTAL-byte file",
                         "schema": {"type": "string", "pattern": "^bytes [0-9]{1,12}-[0-9]{1,12}/[0-9]{1,12}$"}}],
                    requestBody={"required": True, "content": {"application/octet-stream": {"schema": _BINARY}}}),
            },
            "/api/nodes": {"get": _op("Workers, as `ffrtmp nodes list --json`", {
                "200": _json({"type": "object", "required": ["nodes"], "properties": {
                    "nodes": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}}}, "the nodes")},
                *_COMMON)},
            "/api/stats": {"get": _op("Counts by state, capacity, queues and recent activity", {
                "200": _json({"$ref": "#/components/schemas/Stats"}, "the cluster now")}, *_COMMON)},
            "/api/report": {"get": _op("Completed jobs' quality, speed, energy and cost per group (`report --json`)",
                                       {"200": _json(_OBJECT, "{by, since, group, jobs, groups[, points]}")},
                                       400, *_COMMON, parameters=_REPORT_QUERY)},
            "/api/recommend": {"get": _op("The cheapest measured encoder and bitrate for a target (`recommend --json`)",
                                          {"200": _json(_OBJECT, "{recommendation or null, encoders, sweeps, ...}")},
                                          400, *_COMMON, parameters=_RECOMMEND_QUERY)},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "an API key (`ffrtmp keys api create`)"}},
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict[str, Any]:
    return {
        "Error": {"type": "object", "required": ["error", "field"], "properties": {
            "error": {"type": "string"}, "field": {"type": ["string", "null"]}}},
        "Health": {"type": "object", "required": ["status", "version"], "properties": {
            "status": {"type": "string", "enum": ["ok", "stuck"]}, "version": {"type": "string"}}},
        "JobSpec": {"type": "object", "required": ["scenario"], "description": "the fields of `ffrtmp jobs submit`",
                    "properties": {"scenario": {"type": "string"}, "engine": {"type": "string"},
                                   "queue": {"type": "string"}, "priority": {"type": "string"},
                                   "quality": {"type": "string", "enum": list(QUALITY_MODES),
                                               "description": "measure the output against its source: basic "
                                               "= PSNR + SSIM (default for file outputs), vmaf adds VMAF; "
                                               "none for rtmp:// outputs"},
                                   "params": {"type": "object"}}},
        "Job": {"type": "object", "required": ["id", "status"], "properties": {
            "id": {"type": "string"}, "status": {"type": "string", "enum": list(STATUSES)},
            "scenario": {"type": "string"}, "attempts": {"type": "integer"}}},
        "Logs": {"type": "object", "required": ["id", "status", "lines", "done"], "properties": {
            "id": {"type": "string"}, "status": {"type": "string"}, "attempts": {"type": "integer"},
            "done": {"type": "boolean"}, "dropped": {"type": ["integer", "boolean", "null"]},
            "lines": {"type": "array", "items": {"type": "object", "required": ["attempt", "seq", "line"],
                                                 "properties": {"attempt": {"type": "integer"},
                                                                "seq": {"type": "integer"},
                                                                "stream": {"type": "string"},
                                                                "line": {"type": "string"}}}}}},
        "FileRef": {"type": "object", "required": ["sha256", "size", "name"], "properties": {
            "sha256": {"type": "string"}, "size": {"type": "integer"}, "name": {"type": "string"}}},
        "FilePart": {"type": "object", "required": ["sha256", "size", "name", "offset"], "properties": {
            "sha256": {"type": "string"}, "size": {"type": "integer"}, "name": {"type": "string"},
            "offset": {"type": "integer", "description": "bytes received so far"}}},
        "Node": {"type": "object", "required": ["name", "status"], "properties": {
            "name": {"type": "string"}, "status": {"type": "string"}}},
        "Stats": {"type": "object", "required": ["jobs", "nodes", "queues", "version"], "properties": {
            "jobs": {"type": "object", "additionalProperties": {"type": "integer"}},
            "nodes": {"type": "object"}, "queues": {"type": "object"}, "version": {"type": "string"},
            "uptime": {"type": "number"}}},
    }
