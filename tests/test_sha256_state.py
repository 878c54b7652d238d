"""The resumable SHA-256 (files/sha256_state.py): its digests are hashlib's, also across a saved state."""

from __future__ import annotations

import hashlib
import os

import pytest

from ffrtmp.files.sha256_state import STATE_SIZE, ResumableSha256, resumable


def test_a_state_carried_to_a_new_hash_gives_hashlibs_digest() -> None:
    if resumable() is None:
        pytest.skip("this Python's OpenSSL has no SHA256_Init: uploads resume only on the master that began them")
    data = os.urandom(3 * 65536 + 17)
    first = ResumableSha256()
    first.update(data[:100_000])
    assert first.hexdigest() == hashlib.sha256(data[:100_000]).hexdigest()  # a digest does not end the hash
    carried = ResumableSha256.from_state(first.state())
    carried.update(memoryview(data)[100_000:])
    first.update(bytearray(data[100_000:]))
    assert carried.hexdigest() == first.hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(bytes.fromhex(first.state())) == STATE_SIZE == 112
    with pytest.raises(ValueError, match="112 bytes"):
        ResumableSha256.from_state("00" * 10)
