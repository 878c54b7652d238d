"""A master and workers in this test process (threads), over real CURVE sockets on 127.0.0.1."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffrtmp.client import Client
from ffrtmp.master.coordinator import MasterConfig
from ffrtmp.master.server import MasterOptions, MasterServer
from ffrtmp.security import load_public_key, write_certificates
from ffrtmp.worker.agent import Agent, WorkerOptions
from ffrtmp.worker.capabilities import Capabilities, detect


@dataclass
class InProcessCluster:
    root: Path
    server: MasterServer
    thread: threading.Thread
    agents: list[tuple[Agent, threading.Thread]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def master_key(self) -> str:
        return str(self.root / "master" / "master.key")

    def client(self, **options: Any) -> Client:
        return Client(self.url, master_key=self.master_key, timeout=options.pop("timeout", 5.0), **options)

    def add_worker(self, name: str, *, slots: int = 1, capabilities: Capabilities | None = None,
                   **options: Any) -> Agent:
        """A worker that reads inputs under the cluster's root and reaches 127.0.0.1 (the test nginx-rtmp),
        unless `input_roots`/`allow_private_network` say otherwise."""
        from ffrtmp.security import client_keypair

        options.setdefault("input_roots", (self.root,))
        options.setdefault("allow_private_network", True)
        keys = client_keypair()
        agent = Agent(WorkerOptions(master=self.url, master_key=load_public_key(self.master_key), client_keys=keys,
                                    name=name, fingerprint=f"fp-{name}", slots=slots,
                                    work_dir=self.root / "work" / name, **options),
                      capabilities or shared_capabilities())
        thread = threading.Thread(target=agent.run, name=f"agent-{name}", daemon=True)
        thread.start()
        self.agents.append((agent, thread))
        return agent

    def stop(self) -> None:
        for agent, _ in self.agents:
            agent.stop_now = True
            agent.wake()
        for _, thread in self.agents:
            thread.join(timeout=15)
        self.server.stop_event.set()
        self.thread.join(timeout=15)


@functools.lru_cache(maxsize=1)
def shared_capabilities() -> Capabilities:
    """Encoder validation runs test encodes; once per test session is enough."""
    return detect(None)


def wait_for_workers(cluster: InProcessCluster, *names: str, timeout: float = 20.0) -> None:
    from tests.conftest import eventually

    with cluster.client() as client:
        eventually(lambda: set(names) <= {n["name"] for n in client.nodes() if n["status"] == "online"},
                   timeout=timeout, message=f"workers {names} to join")


@contextmanager
def inprocess_cluster(root: Path, **config: Any) -> Iterator[InProcessCluster]:
    write_certificates(root / "_config", "client")
    options = MasterOptions(bind="127.0.0.1", port=0, data_dir=root / "master", metrics=False,
                            config=MasterConfig(**config))
    server = MasterServer(options)
    thread = threading.Thread(target=server.run, name="master", daemon=True)
    thread.start()
    cluster = InProcessCluster(root, server, thread)
    try:
        yield cluster
    finally:
        cluster.stop()
