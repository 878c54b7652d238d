"""Jobs and nodes as the JSON clients see (`jobs show --json`): stable field names, ISO-8601 UTC times."""

from __future__ import annotations

import datetime as dt
from typing import Any

JOB_TIME_FIELDS = ("created_at", "started_at", "finished_at")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_json(job: dict[str, Any], history: list[dict[str, Any]] | None = None,
             attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = {
        "id": job["id"],
        "status": job["status"],
        "scenario": job["scenario"],
        "queue": job["queue"],
        "priority": job["priority"],
        "engine": job["engine"],
        "params": job["params"],
        "labels": job["labels"],
        "attempts": job["attempts"],
        "max_retries": job["max_retries"],
        "timeout": job["timeout"],
        "node": job["node"],
        "progress": job["progress"],
        "error": job["error"],
        "failure": job["failure"],
        "output": job["output"],
        "metrics": job["metrics"],
        "reason": job["reason"] if job["status"] == "pending" else None,
        "not_before": iso(job["not_before"]) if job["not_before"] else None,
    }
    for key in JOB_TIME_FIELDS:
        out[key] = iso(job[key])
    if history is not None:
        out["history"] = [{**h, "at": iso(h["at"])} for h in history]
    if attempts is not None:
        out["attempt_list"] = [
            {**a, "assigned_at": iso(a["assigned_at"]), "started_at": iso(a["started_at"]),
             "finished_at": iso(a["finished_at"])} for a in attempts]
    return out


def node_json(node: dict[str, Any], live: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {
        "name": node["name"],
        "status": node["status"],
        "version": node["version"],
        "slots": node["slots"],
        "engines": node["engines"],
        "encoders": node["encoders"],
        "labels": node["labels"],
        "resources": node["resources"],
        "first_seen": iso(node["first_seen"]),
        "last_seen": iso(node["last_seen"]),
        "running": 0,
        "jobs": [],
    }
    if live:
        out.update(live)
        out["last_seen"] = iso(live["last_seen"]) if "last_seen" in live else out["last_seen"]
    return out
