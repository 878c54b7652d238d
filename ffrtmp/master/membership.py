"""One master's place in a cluster: the server loop's hook between the socket, the election and the coordinator.

While this master leads, frames go to the coordinator, which ticks and dispatches. When it wins a term it
rebuilds as a restarted master does: a fresh store connection (no counts cached from before another master
wrote) and a fresh coordinator restored from it, whose attempts wait for their workers to come back and
report them. When it loses the lease (a write refused with NotLeader, a renewal refused, its trust run out)
the coordinator's unsent replies are dropped (their writes were rolled back), log followers are told to
follow again, and from then on the standby desk answers every peer with where the leader is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from ffrtmp.master.coordinator import Coordinator
from ffrtmp.master.leadership import Election, LeaseTimings
from ffrtmp.master.metrics import MasterMetrics
from ffrtmp.master.standby import StandbyDesk, is_cluster_request
from ffrtmp.master.store import Store
from ffrtmp.master.store.health import WriteFault, is_write_fault
from ffrtmp.master.store.leases import Lease, NotLeader

log = logging.getLogger("ffrtmp.master")

Frames = list[tuple[bytes, bytes, str | None]]


class Host(Protocol):
    """What a member needs of the server that owns the socket (master/server.py's MasterServer)."""

    store: Store
    """The server's own store: it holds the lease."""
    coordinator: Coordinator
    """Replaced with a fresh one when this master wins a new term."""
    metrics: MasterMetrics | None

    def send_frame(self, route: bytes, frame: bytes) -> bool: ...


def keeps_lease_on(store: Store) -> Callable[[BaseException], bool]:
    """The renewal faults that do not end the leadership: only those of a store on this machine's disk.

    A full or failing disk under SQLite stops every master alike, so none could take over. A fault reaching a
    PostgreSQL server (a lost connection, a server restarting, a partition) may be this master's alone: the
    others may reach the server and take over once the lease runs out. Staying leader then would keep the
    workers on a master that can write nothing, so it steps down when its trust runs out.
    """
    if store.directory is None:
        return lambda exc: False
    return lambda exc: isinstance(exc, WriteFault) or is_write_fault(exc)


class ClusterMember:
    def __init__(self, server: Host, name: str, address: str, timings: LeaseTimings,
                 open_store: Callable[[], Store], on_lead: Callable[[], None] | None = None) -> None:
        self.server = server
        self.on_lead = on_lead
        """Called when this master wins a term after its start, before it answers anyone as the leader."""
        self.name = name
        self.open_store = open_store
        self.election = Election(server.store, name, address, timings, on_elected=self._elected,
                                 on_deposed=self._deposed,
                                 keeps_lease_on=keeps_lease_on(server.store))
        self.desk = StandbyDesk(server.store, lambda: server.coordinator.authority, lambda: self.election.lease,
                                server.send_frame)
        self.term_store: Store | None = None
        self.started = False
        """Past `start`: a term won from now on rebuilds on a fresh store connection and coordinator."""
        """The coordinator's store while this master leads (or led last); the server's own holds the lease."""

    @property
    def leading(self) -> bool:
        return self.election.leading

    def start(self, now: float, mono: float) -> None:
        """The first look at the lease: a master alone (or first) leads at once, before its loop starts."""
        self.election.tick(now, mono)
        self.started = True

    def handle_batch(self, frames: Frames, now: float, mono: float) -> None:
        if any(is_cluster_request(frame) for _, frame, *_ in frames):
            asks = [entry for entry in frames if is_cluster_request(entry[1])]
            self.desk.answer(asks)
            frames = [entry for entry in frames if not is_cluster_request(entry[1])]
        if not frames:
            return
        if not self.election.leading:
            self.desk.answer(frames)
            return
        for _ in range(2):
            try:
                self.server.coordinator.handle_batch(frames, now, mono)
                return
            except NotLeader as exc:
                self._lost(exc, now, mono)
                if not self.election.leading:
                    break
            # Still leading: only our own lease had run out (a stalled loop) and nobody took it, so this
            # master won the next term, rebuilt, and handles the batch again: its peers never see a refusal.
        self.desk.answer(frames)  # nothing of the batch was stored: its senders go to the leader

    def tick(self, now: float, mono: float) -> None:
        self._elect(now, mono)
        if self.election.leading:
            try:
                self.server.coordinator.tick(now, mono)
            except NotLeader as exc:
                self._lost(exc, now, mono)

    def _lost(self, exc: NotLeader, now: float, mono: float) -> None:
        self.election.lost(exc, mono)
        self._elect(now, mono)  # at once: when the lease is free, this master takes the next term

    def _elect(self, now: float, mono: float) -> None:
        try:
            self.election.tick(now, mono)
        except Exception as exc:  # winning failed while rebuilding (its store fails): it released the lease again
            log.error("master %s won the lease but could not rebuild its state (%s); standing by", self.name, exc)

    def stop(self) -> None:
        self.election.stop(time.monotonic())

    def close(self) -> None:
        if self.term_store is not None:
            self.term_store.close()
            self.term_store = None

    # ---- the election's callbacks -----------------------------------------------------------------

    def _elected(self, term: int) -> None:
        server = self.server
        if not self.started:
            # At start, as a master alone does: the coordinator built a moment ago from the store is fresh.
            server.store.fence(self.name, term)
            server.coordinator.restore(time.time(), time.monotonic())
            return
        store = self.open_store()
        try:
            store.fence(self.name, term)
            old = server.coordinator
            # metrics and tracing follow the new coordinator
            coordinator = Coordinator(store, old.config, server.send_frame, observer=old.observer)
            store.on_commit = old.observer.committed
            coordinator.allowed_keys = old.allowed_keys
            coordinator.restore(time.time(), time.monotonic())
        except BaseException:
            store.close()
            raise
        server.coordinator = coordinator
        if server.metrics is not None:
            server.metrics.collector.coordinator = coordinator
        if self.term_store is not None:
            self.term_store.close()
        self.term_store = store
        if self.on_lead is not None:
            self.on_lead()

    def _deposed(self, lease: Lease | None) -> None:
        coordinator = self.server.coordinator
        coordinator.store.fence(self.name, 0)
        # What it was about to say came from a transaction that was rolled back: none of it may leave.
        coordinator.forget_volatile_state()
        coordinator.logbook.restarting()  # followers follow again, and are sent on to the leader
        try:
            coordinator.flush()
        except Exception:
            log.exception("could not tell the log followers that this master stands by")
