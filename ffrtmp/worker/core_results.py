"""The worker's results until the master acknowledges them: sent, resent, published, kept on disk.

A RESULT counts as delivered only on the master's ACK: a frame ZeroMQ has merely queued is lost when the
connection is replaced. So every result stays in `unacked` (with when it was last sent, on the monotonic
clock) and is sent again every `RESULT_RESEND_INTERVAL` and after every WELCOME. A completed file output
keeps its partial name until the master accepts the attempt (`ACK publish`), and results never acknowledged
when the worker stops are kept in a spool that the next run with the same name and work dir reports.
No clock and no socket here: the core passes the time in and sends what `take_due` returns.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ffrtmp import defaults
from ffrtmp.failures import Failure
from ffrtmp.worker.outputs import discard, publish
from ffrtmp.worker.spool import ResultSpool

log = logging.getLogger("ffrtmp.worker")

Key = tuple[str, int]


class Results:
    def __init__(self, spool: ResultSpool) -> None:
        self.spool = spool
        self.unacked: dict[Key, tuple[dict[str, Any], float]] = {}
        """RESULT bodies sent and not yet acknowledged, with when they were last sent."""
        self.due: list[dict[str, Any]] = []
        """RESULT bodies to send at the end of this pass, together."""
        self.publishing: dict[Key, tuple[str, str]] = {}
        """Completed attempts whose file waits under its partial name (partial, final) for the master's word."""
        self.spooled: set[Key] = set()
        self.master_publishes = False
        """The master fences the publish step (says so in WELCOME); an older one gets outputs renamed at once."""
        for body in spool.load():  # results an earlier run could not deliver: offered at the next WELCOME
            self.unacked[(body["job"], body["attempt"])] = (body, -math.inf)
            self.spooled.add((body["job"], body["attempt"]))
        if self.spooled:
            log.info("%d undelivered results from an earlier run, kept in %s, will be reported", len(self.spooled),
                     spool.directory)

    def record(self, body: dict[str, Any], mono: float) -> None:
        """A result to send now and keep until acknowledged."""
        self.unacked[(body["job"], body["attempt"])] = (body, mono)
        self.due.append(body)

    def hold_for_publish(self, key: Key, partial: str, final: str) -> None:
        self.publishing[key] = (partial, final)

    def take_due(self) -> list[dict[str, Any]]:
        due, self.due = self.due, []
        return due

    def resend_stale(self, mono: float) -> None:
        """Results the master has not acknowledged within the resend interval go out again."""
        for key, (body, sent_at) in list(self.unacked.items()):
            if mono - sent_at >= defaults.RESULT_RESEND_INTERVAL:
                self.unacked[key] = (body, mono)
                self.due.append(body)

    def welcomed(self, mono: float, master_publishes: bool) -> None:
        """A (new) master welcomed us: everything unacknowledged is sent again, at once."""
        self.master_publishes = master_publishes
        if not master_publishes:  # a master that records 'completed' on the first RESULT
            for key in list(self.publishing):
                self.unacked[key] = (published(self.unacked[key][0], *self.publishing.pop(key)), mono)
        self.due.extend(body for body, _ in self.unacked.values())

    def acknowledged(self, key: Key) -> None:
        self.unacked.pop(key, None)
        if key in self.spooled:
            self.spooled.discard(key)
            self.spool.remove(*key)
        if key in self.publishing:
            # Acknowledged without being accepted (a stale attempt): its file must never become the output.
            discard(self.publishing.pop(key)[0])

    def accepted(self, key: Key, mono: float, fresh: bool) -> None:
        """The master accepted this completed attempt: give its file the final name, then report it published.

        An answer that is not `fresh` may have waited out a silence (SIGSTOP, partition) in which the master gave
        the job away: then the file is not published, and the result is sent again to ask once more."""
        entry, sent = self.publishing.get(key), self.unacked.get(key)
        if entry is None or sent is None:
            return  # published already: a repeated answer to a resent RESULT
        if not fresh:
            self.record(sent[0], mono)
            return
        self.record(published(sent[0], *self.publishing.pop(key)), mono)

    def keep(self) -> None:
        """The worker stops: outputs never accepted are deleted, the rest is kept on disk for the next run."""
        for key, (partial, _) in self.publishing.items():
            discard(partial)  # never accepted: once this process is gone, no one could publish it
            if key in self.unacked:  # so what is kept to report says the output is gone, not 'completed'
                body = {k: v for k, v in self.unacked[key][0].items() if k != "partial"}
                body.update(status="failed", failure=Failure.WORKER_LOST.value, output=None,
                            error="the worker stopped before the master accepted this attempt's output")
                self.unacked[key] = (body, self.unacked[key][1])
        self.publishing.clear()
        try:
            self.spool.save([body for body, _ in self.unacked.values()])
        except OSError as exc:
            log.error("cannot keep %d undelivered results in %s: %s", len(self.unacked), self.spool.directory, exc)


def published(sent: dict[str, Any], partial: str, final: str) -> dict[str, Any]:
    """Rename the partial file to its final name; the RESULT body that reports it (or the failure)."""
    body = {key: value for key, value in sent.items() if key != "partial"}
    try:
        publish(partial, final)
        body["published"] = True
    except OSError as exc:
        discard(partial)
        body.update(status="failed", failure=Failure.ENCODER_ERROR.value,
                    error=f"the output could not be published as {final}: {exc.strerror or exc}")
    return body
