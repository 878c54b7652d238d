"""Engine processes die with their worker, even when the worker is SIGKILLed.

An engine runs in its own session (so a cancel can kill its whole group), which also means nothing ends it
when the worker dies without cleaning up: an ffmpeg blocked on a silent input, or one that ignores the
broken pipe of its stdout, would run on, holding the stream key or the output file of an attempt the master
has already given to another worker. On Linux the child asks the kernel for SIGKILL when its parent dies
(`prctl(PR_SET_PDEATHSIG)`), which survives the exec of `nice` and of the engine.

`subprocess.Popen(preexec_fn=…)` is unsafe in a threaded program because the child runs Python between
fork and exec; so the function is kept to two calls that are safe there (prctl and getppid, resolved in
the parent beforehand) and never imports, logs or takes a lock. The check of getppid closes the race of a
parent that died between fork and prctl: the child then kills itself before exec.

Any `preexec_fn` makes Python fork the whole worker instead of using vfork: 4 ms of the worker's CPU and 8 ms
before the engine starts, per job. So where util-linux's `setpriv --pdeathsig` is installed (Debian, Ubuntu,
Fedora, …) the engine is started through it instead and Python keeps vfork; the prctl preexec is the
fallback. `setpriv` cannot check getppid, so a worker killed in the ~0.1 ms between its exec and its
prctl leaves that one engine running (the master still gives its attempt to another worker; its output is
that attempt's own file, never published).

The kernel ties the signal to the thread that forked the child: the runner's thread, which outlives its
process (it waits for it) unless the whole worker dies, which is the point.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable

from ffrtmp.libc import linux_function

log = logging.getLogger("ffrtmp.worker")

PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""


_PRCTL = linux_function("prctl", [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong])
_said_unavailable = False


def available() -> bool:
    return _PRCTL is not None


def die_with_parent(parent: int | None = None) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child die with this process (`parent`: its pid, by default this one).

    None where the platform has no prctl (said once in the log): there an engine may outlive a killed worker.
    """
    global _said_unavailable
    if _PRCTL is None:
        if not _said_unavailable:
            _said_unavailable = True
            log.info("no prctl on this platform: an engine process may outlive a worker that is killed")
        return None
    prctl, getppid, kill, me = _PRCTL, os.getppid, os.kill, os.getpid
    expected = os.getpid() if parent is None else parent
    sigkill = int(signal.SIGKILL)

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if getppid() != expected:  # the parent died before prctl took effect: no one is left to stop us
            kill(me(), sigkill)

    return in_child


_setpriv: list[str] | None = None
_setpriv_known = False


def setpriv_prefix() -> list[str] | None:
    """`[setpriv, --pdeathsig, KILL, --]` where this machine's setpriv can set the signal (tried once), else None."""
    global _setpriv, _setpriv_known
    if not _setpriv_known:
        _setpriv_known = True
        found = shutil.which("setpriv") if _PRCTL is not None else None
        if found:
            prefix = [found, "--pdeathsig", "KILL", "--"]
            try:
                works = subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                works = False
            _setpriv = prefix if works else None
    return _setpriv


def engine_spawn() -> tuple[list[str], Callable[[], None] | None]:
    """(argv prefix, preexec_fn) with which an engine dies with this worker: setpriv where it works, else the
    prctl preexec (None, None where neither exists)."""
    prefix = setpriv_prefix()
    if prefix is not None:
        return prefix, None
    return [], die_with_parent()
