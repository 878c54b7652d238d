"""A SHA-256 whose state can be saved and carried on elsewhere: what lets another master resume an upload.

An upload to a bucket is hashed as its parts go up; S3 cannot give back the bytes of an unfinished multipart
upload, so a master that takes over an interrupted one can only go on if it gets the hash of the parts already
sent. `hashlib` cannot export its state; OpenSSL's SHA256_CTX (the same libcrypto Python's `_hashlib` links,
found through it) is a plain 112-byte struct that has kept its layout from OpenSSL 1.0 to 3.x, and its
SHA256_Update runs as fast (SHA-NI), without the GIL. Where that library or those functions are missing,
`resumable()` is None and uploads resume only on the master that began them, as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from typing import Any


class _Context(ctypes.Structure):
    """OpenSSL's SHA256_CTX (include/openssl/sha.h)."""

    _fields_ = [("h", ctypes.c_uint32 * 8), ("Nl", ctypes.c_uint32), ("Nh", ctypes.c_uint32),
                ("data", ctypes.c_uint32 * 16), ("num", ctypes.c_uint32), ("md_len", ctypes.c_uint32)]


STATE_SIZE = ctypes.sizeof(_Context)


def _load() -> Any:
    candidates: list[str] = []
    try:
        import _hashlib

        candidates.append(str(_hashlib.__file__))  # its libcrypto's symbols are found through it
    except (ImportError, AttributeError):
        pass
    found = ctypes.util.find_library("crypto")
    if found:
        candidates.append(found)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            init, update, final = lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final
        except (OSError, AttributeError):
            continue
        init.argtypes = [ctypes.c_void_p]
        update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        if _works(init, update, final):
            return lib
    return None


def _works(init: Any, update: Any, final: Any) -> bool:
    """The functions give hashlib's digest, carried across a saved state (a layout other than ours would not)."""
    first, second = _Context(), _Context()
    out = ctypes.create_string_buffer(32)
    init(ctypes.byref(first))
    update(ctypes.byref(first), b"a" * 100, 100)
    ctypes.memmove(ctypes.byref(second), ctypes.byref(first), STATE_SIZE)
    update(ctypes.byref(second), b"b" * 50, 50)
    final(out, ctypes.byref(second))
    return out.raw == hashlib.sha256(b"a" * 100 + b"b" * 50).digest()


_LIB = _load()


class ResumableSha256:
    """`hashlib.sha256()`'s update and hexdigest, plus `state()` and `from_state()`."""

    def __init__(self) -> None:
        assert _LIB is not None, "check resumable() first"
        self._context = _Context()
        _LIB.SHA256_Init(ctypes.byref(self._context))

    def update(self, data: bytes | bytearray | memoryview) -> None:
        chunk = data if isinstance(data, bytes) else bytes(data)
        _LIB.SHA256_Update(ctypes.byref(self._context), chunk, len(chunk))

    def hexdigest(self) -> str:
        copy = _Context.from_buffer_copy(bytes(self._context))  # Final ends a context: keep ours going
        out = ctypes.create_string_buffer(32)
        _LIB.SHA256_Final(out, ctypes.byref(copy))
        return out.raw.hex()

    def state(self) -> str:
        """The state, in hex: give it to `from_state` to go on hashing from here."""
        return bytes(self._context).hex()

    @classmethod
    def from_state(cls, state: str) -> ResumableSha256:
        """ValueError when `state` is not one `state()` gave."""
        raw = bytes.fromhex(state)
        if len(raw) != STATE_SIZE:
            raise ValueError(f"a SHA-256 state is {STATE_SIZE} bytes, not {len(raw)}")
        resumed = cls()
        resumed._context = _Context.from_buffer_copy(raw)
        return resumed


def resumable() -> type[ResumableSha256] | None:
    """The resumable hash where this Python's OpenSSL has it, else None."""
    return ResumableSha256 if _LIB is not None else None
