"""The job's process tree as the usage sampler finds it: the kernel's per-thread child lists give the same
processes as psutil's walk of every process on the machine."""

from __future__ import annotations

import subprocess

import psutil
import pytest

from ffrtmp.worker import usage
from ffrtmp.worker.usage import TreeUsage, descendants
from tests.conftest import eventually


def test_descendants_are_the_ones_psutil_finds_and_a_gone_root_raises() -> None:
    proc = subprocess.Popen(["bash", "-c", "sleep 30 & (sleep 30; true) & wait"])
    try:
        root = psutil.Process(proc.pid)
        eventually(lambda: len(root.children(recursive=True)) >= 3, timeout=5, message="the tree to start")
        assert sorted(p.pid for p in descendants(root)) == sorted(p.pid for p in root.children(recursive=True))
        sampled = TreeUsage(proc.pid)
        sampled.sample(force=True)
        assert sampled.samples == 1
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()
    with pytest.raises(psutil.Error):
        descendants(root)


def test_without_the_kernels_lists_it_walks_with_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage, "_LISTS", False)
    me = psutil.Process()
    with subprocess.Popen(["sleep", "30"]) as child:
        try:
            assert child.pid in [p.pid for p in descendants(me)]
        finally:
            child.kill()
