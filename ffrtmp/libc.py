"""A Linux C library function for ctypes, or None elsewhere (or where this libc lacks it)."""

from __future__ import annotations

import ctypes
import sys
from typing import Any


def linux_function(name: str, argtypes: list[Any], restype: Any = ctypes.c_int) -> Any:
    """`name` from the process's own C library with `use_errno` (read `ctypes.get_errno()` after a -1); a CDLL
    call releases the GIL while it runs."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = restype
    return function
