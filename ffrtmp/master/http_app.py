"""The HTTP API's route table: path → handler (http_routes.py for the JSON endpoints, http_files.py for files)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import tornado.web

from ffrtmp.master.filedesk import FileDesk
from ffrtmp.master.http_deadlines import ReadDeadlines
from ffrtmp.master.http_files import Files, JobFile
from ffrtmp.master.http_gateway import Gateway
from ffrtmp.master.http_routes import (
    Health,
    Job,
    JobAction,
    Jobs,
    Logs,
    Nodes,
    NotFoundHandler,
    OpenApi,
    Recommend,
    Report,
    Stats,
)

log = logging.getLogger("ffrtmp.master")


def application(gateway: Gateway, files: Callable[[], FileDesk | None] | None = None,
                deadlines: ReadDeadlines | None = None) -> tornado.web.Application:
    """`files`: the master's file desk now (None while it has no file store: the file endpoints answer 404)."""
    job = r"/api/jobs/([^/]+)"
    args = {"gateway": gateway}
    file_args = {**args, "files": files, "deadlines": deadlines}
    uploading: dict[str, Files] = {}
    return tornado.web.Application([
        (r"/health", Health, args),
        (r"/api/openapi.json", OpenApi, args),
        (r"/api/jobs", Jobs, args),
        (job, Job, args),
        (job + r"/(cancel|retry)", JobAction, args),
        (job + r"/logs", Logs, args),
        (job + r"/output", JobFile, file_args),
        (r"/api/files/([^/]+)", Files, {**file_args, "uploading": uploading}),
        (r"/api/nodes", Nodes, args),
        (r"/api/stats", Stats, args),
        (r"/api/report", Report, args),
        (r"/api/recommend", Recommend, args),
    ], default_handler_class=NotFoundHandler, default_handler_args=args, compress_response=False,
        log_function=_access_log)


def _access_log(handler: tornado.web.RequestHandler) -> None:
    # Debug only: at thousands of requests a second an INFO line each would cost more than the request.
    if log.isEnabledFor(logging.DEBUG):
        request = handler.request
        log.debug("http %d %s %s (%s) %.1fms", handler.get_status(), request.method, request.path,
                  request.remote_ip, 1000 * request.request_time())
