"""Secrets in URLs kept out of the master's log: stream keys, passwords and query strings.

An RTMP URL's last path segment is its stream key (`rtmp://host/app/KEY`): whoever reads it can publish
as that stream. Errors from workers quote the URLs they failed on, and those land in the master's log.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"(?i)\b(?:rtmps?|rtsp|srt|https?|udp|tcp)://[^\s'\"<>]+")
_TRAILING = ".,:;)]}"
HIDDEN = "***"


def _redact_one(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("://", 1)[0] + "://" + HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = HIDDEN + "@" + netloc.rsplit("@", 1)[1]
    path = parts.path
    segments = path.split("/")
    if parts.scheme.lower() in ("rtmp", "rtmps") and len([s for s in segments if s]) >= 2:
        segments[-1 if segments[-1] else -2] = HIDDEN
        path = "/".join(segments)
    return urlunsplit((parts.scheme, netloc, path, HIDDEN if parts.query else "", ""))


def redact_urls(text: str) -> str:
    """`text` with each URL's userinfo, query and (RTMP) stream key replaced by ***."""
    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        tail = ""
        while url and url[-1] in _TRAILING:
            url, tail = url[:-1], url[-1] + tail
        return _redact_one(url) + tail

    return _URL.sub(one, text) if "://" in text else text


class RedactUrls(logging.Filter):
    """A logging filter that rewrites each record's message with `redact_urls`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = redact_urls(message), ()
        return True
