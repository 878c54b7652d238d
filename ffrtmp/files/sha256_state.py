"""A SHA-256 whose state can be saved and carried on elsewhere: what lets another master resume an upload.

An upload to a bucket is hashed as its parts go up; S3 cannot give back the bytes of an unfinished multipart
upload, so a master that takes over an interrupted one can only go on if it gets the hash of the parts already
sent. `hashlib` cannot export its state; OpenSSL's SHA256_CTX (the same libcrypto Python's `_hashlib` links,
found through it) is a plain 112-byte struct that has kept its layout from OpenSSL 1.0 to 3.x, and its
SHA256_Update runs as fast (SHA-NI), without the GIL. Where that library or those functions are missing,
`resumable()` is None and uploads resume only on the master that began them, as before.
"""

from __future__ import annotations

import hashlib
from typing import Any

try:
    import ctypes
    import ctypes.util
except ImportError:  # a Python built without ctypes: no resumable hash, uploads resume where they began
    ctypes = None  # type: ignore[assignment]

STATE_SIZE = 112
"""sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len, 32-bit each."""
_ROOM = 4096
"""The check at import runs the functions on a buffer this large, so a library whose context is larger than
ours writes past STATE_SIZE into zeros we can see, not into memory we do not own."""

if ctypes is not None:
    class _Context(ctypes.Structure):
        """OpenSSL's SHA256_CTX (include/openssl/sha.h)."""

        _fields_ = [("h", ctypes.c_uint32 * 8), ("Nl", ctypes.c_uint32), ("Nh", ctypes.c_uint32),
                    ("data", ctypes.c_uint32 * 16), ("num", ctypes.c_uint32), ("md_len", ctypes.c_uint32)]


def _load() -> Any:
    if ctypes is None or ctypes.sizeof(_Context) != STATE_SIZE:
        return None
    candidates: list[str] = []
    try:
        import _hashlib

        candidates.append(str(_hashlib.__file__))  # its libcrypto's symbols are found through it
    except (ImportError, AttributeError):
        pass
    for path in candidates or [ctypes.util.find_library("crypto") or ""]:
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
    """The functions keep to our layout (nothing written past it, the counters where we read them) and give
    hashlib's digest, carried across a copied state."""
    first, second = ctypes.create_string_buffer(_ROOM), ctypes.create_string_buffer(_ROOM)
    out = ctypes.create_string_buffer(32)
    init(first)
    update(first, b"a" * 100, 100)
    context = _Context.from_buffer_copy(first.raw[:STATE_SIZE])
    if first.raw[STATE_SIZE:] != bytes(_ROOM - STATE_SIZE) \
            or (context.Nl, context.num, context.md_len) != (800, 36, 32):
        return False
    ctypes.memmove(second, first, STATE_SIZE)
    update(second, b"b" * 50, 50)
    final(out, second)
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
        out = ctypes.create_string_buffer(32)
        _LIB.SHA256_Final(out, ctypes.byref(self.copy()._context))  # Final ends a context: keep ours going
        return out.raw.hex()

    def copy(self) -> ResumableSha256:
        copied = ResumableSha256()
        copied._context = _Context.from_buffer_copy(bytes(self._context))
        return copied

    def state(self) -> str:
        """The state, in hex: give it to `from_state` to go on hashing from here."""
        return bytes(self._context).hex()

    @classmethod
    def from_state(cls, state: str, length: int) -> ResumableSha256:
        """The hash of `length` bytes carried on from `state`; ValueError unless `state` is one that `state()`
        gave after exactly that many (its counters are what OpenSSL trusts for lengths: a forged one would make
        it copy past its buffer)."""
        raw = bytes.fromhex(state)
        if len(raw) != STATE_SIZE:
            raise ValueError(f"a SHA-256 state is {STATE_SIZE} bytes, not {len(raw)}")
        context = _Context.from_buffer_copy(raw)
        if (context.md_len, context.num, (context.Nh << 32) | context.Nl) != (32, length % 64, 8 * length):
            raise ValueError(f"the SHA-256 state is not one of {length} bytes hashed")
        resumed = cls()
        resumed._context = context
        return resumed


def resumable() -> type[ResumableSha256] | None:
    """The resumable hash where this Python's OpenSSL has it, else None."""
    return ResumableSha256 if _LIB is not None else None
