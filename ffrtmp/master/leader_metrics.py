"""The master's leadership series: whether it leads, the term, and how often it took over (SPEC §8), and its
writes refused as a stale leader's.

Read from the election at scrape time (plain attributes, safe to read from the HTTP thread).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ffrtmp.master.leadership import Election


class LeadershipCollector(Collector):
    def __init__(self, election: Election) -> None:
        self.election = election

    def collect(self) -> Iterator[Metric]:
        election = self.election
        lease = election.lease
        yield GaugeMetricFamily("ffrtmp_master_leader", "1 while this master holds the lease and dispatches, else 0",
                                value=1 if election.leading else 0)
        yield GaugeMetricFamily("ffrtmp_master_term", "The lease's term: this master's own while it leads, else "
                                "the one it last read (0: never held)",
                                value=election.term if election.term is not None else (lease.term if lease else 0))
        yield CounterMetricFamily("ffrtmp_master_failovers", "Terms this master took over from an earlier one "
                                  "(a dead, stopped or deposed leader's)", value=election.failovers)
        yield CounterMetricFamily("ffrtmp_master_stale_writes_refused", "Write transactions of this master refused "
                                  "because it no longer held the lease (fenced: nothing of them was committed)",
                                  value=election.refused_writes)


def register(registry: CollectorRegistry, election: Election) -> LeadershipCollector:
    collector = LeadershipCollector(election)
    registry.register(collector)
    return collector
