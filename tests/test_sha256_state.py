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
    carried = ResumableSha256.from_state(first.state(), 100_000)
    carried.update(memoryview(data)[100_000:])
    first.update(bytearray(data[100_000:]))
    assert carried.hexdigest() == first.hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(bytes.fromhex(first.state())) == STATE_SIZE == 112
    with pytest.raises(ValueError, match="112 bytes"):
        ResumableSha256.from_state("00" * 10, 0)


@pytest.mark.parametrize("field", ["num", "Nl", "md_len"])
def test_a_state_whose_counters_do_not_match_its_length_is_refused_before_openssl_reads_it(field: str) -> None:
    """OpenSSL trusts the counters as lengths: a forged `num` made SHA256_Update copy past its buffer (the
    process died with SIGSEGV). The length the caller knows must agree with them."""
    if resumable() is None:
        pytest.skip("no resumable SHA-256 here")
    from ffrtmp.files.sha256_state import _Context

    hashed = ResumableSha256()
    hashed.update(b"x" * 128)
    assert ResumableSha256.from_state(hashed.state(), 128).hexdigest() == hashlib.sha256(b"x" * 128).hexdigest()
    context = _Context.from_buffer_copy(bytes.fromhex(hashed.state()))
    setattr(context, field, 0xFFFFFF00)
    with pytest.raises(ValueError, match="not one of 128 bytes"):
        ResumableSha256.from_state(bytes(context).hex(), 128)
    with pytest.raises(ValueError):
        ResumableSha256.from_state(hashed.state(), 64)
