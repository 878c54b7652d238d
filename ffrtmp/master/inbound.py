"""Bounded work per peer before any authorization work (H4: a pre-auth flood must not stall the master).

Every frame from a peer that is not a joined worker pays into a token bucket of its peer (its CURVE key, or
its connection without CURVE) before it is even decoded: one token per frame and one per 4 KiB. A peer
over its bucket has its frames dropped unread, and a failed API key drains its bucket and bars it for a
moment, so a client that only holds the master's public key costs a byte count and a dict lookup per frame.
Joined workers pay nothing here (their messages have their own limit after decoding), so heartbeats and
results always get in.
A loop turn also ends after `PREAUTH_SHARE` frames, or `PREAUTH_TURN_BYTES` decoded, from such peers: the rest
wait in ZeroMQ (bounded by its receive high-water mark), and upkeep, dispatch and everyone else's frames get
their turn between, however much comes in. A turn that dropped `DROP_SHARE` frames is followed by a short
pause, so a flood is held back by ZeroMQ and TCP rather than read and dropped as fast as it can be sent.

A BATCH is refused from anyone but a joined worker; one in the form every ffrtmp encoder writes is recognised
by its first bytes and dropped unread, whatever its peer's budget: decoding 1,000 requests only to refuse them
cost ~2 ms a frame and, worse, the garbage collector's full passes that so many new objects set off.
"""

from __future__ import annotations

from ffrtmp import defaults
from ffrtmp.master.ratelimit import RateLimiter
from ffrtmp.protocol import Kind, encode

KIND = "inbound"
BYTES_PER_TOKEN = 4096
"""Decoding is linear in size: a peer pays a token per 4 KiB (the default rate: 4 MiB/s per peer)."""
AUTH_FAILURE_COST = 50.0
"""Tokens a failed API key costs its peer (taken down to zero, never below)."""
AUTH_FAILURE_BAR = 0.05
"""Seconds after a failed API key before its peer's bucket refills at all: one that keeps failing gets ~20
frames a second through. Emptied but refilling at once, the bucket let ~1,000 a second through (a frame's
token each millisecond), and every one was decoded, checked and answered 401."""
PREAUTH_SHARE = 500
"""Frames from peers that are not joined workers read in one loop turn, at most."""
PREAUTH_TURN_BYTES = 256 * 1024
"""Bytes of such frames one loop turn decodes, at most (a bigger frame still passes when first in its turn):
a burst of big frames is spread over turns instead of holding one for hundreds of milliseconds."""
DROP_SHARE = 100
"""Frames dropped unread in one loop turn, at most (big ones count more): the turn then ends, and reading
waits `DROP_PAUSE`."""
DROP_BYTES_PER_FRAME = 1024
"""A dropped frame counts as one more towards `DROP_SHARE` per KiB: a turn drops 100 small frames, or two
BATCHes of 1,000 requests (56 KiB), since ZeroMQ's I/O thread decrypted and the kernel copied every byte."""
DROP_PAUSE = 0.001
"""Seconds the loop reads nothing after a turn that dropped its share, so that ZeroMQ's receive high-water
mark holds the flood back (TCP pushes back on the flooders) instead of the master decrypting and dropping all
a flooder can send (~100,000 frames a second). In the flood bench the master spends 0.15-0.2 of a core on 2
flooders, against 0.4-0.5 when a turn could drop 100 big frames. A calm peer's frame waits at most this long
more (ZeroMQ reads its peers in turn, so it comes within the next turn)."""
_BATCH = encode(Kind.BATCH)
BATCH_HEAD = _BATCH[:_BATCH.index(b',"b"')]
"""How a BATCH frame starts (`{"v":1,"k":"batch"`): the encoder always writes the version and kind first."""


class InboundGate:
    def __init__(self, rate: float = defaults.PREAUTH_RATE, burst: float | None = None) -> None:
        self.limiter = RateLimiter({KIND: (rate, burst if burst is not None else 2 * rate)})
        self.dropped = 0
        """Frames dropped unread: their peer was over its budget, or they were a BATCH."""
        self.turn_left = PREAUTH_SHARE
        self.turn_bytes = PREAUTH_TURN_BYTES
        self.turn_drops = 0

    def new_turn(self) -> None:
        self.turn_left = PREAUTH_SHARE
        self.turn_bytes = PREAUTH_TURN_BYTES
        self.turn_drops = 0

    @property
    def pause(self) -> float:
        """Seconds to read nothing after this turn: `DROP_PAUSE` when it dropped its share, else 0."""
        return DROP_PAUSE if self.turn_drops >= DROP_SHARE else 0.0

    @property
    def turn_over(self) -> bool:
        """This turn has read its share of frames from peers that are not joined workers."""
        return self.turn_left <= 0 or self.turn_bytes <= 0 or self.turn_drops >= DROP_SHARE

    def admit_frame(self, peer: str, frame: memoryview, mono: float) -> bool:
        """`admit` for a frame from a peer that is not a joined worker, and False at once for a BATCH."""
        if frame[:len(BATCH_HEAD)] == BATCH_HEAD:
            self.turn_left -= 1
            self._drop(len(frame))
            return False
        return self.admit(peer, len(frame), mono)

    def admit(self, peer: str, nbytes: int, mono: float) -> bool:
        """True: decode and handle the frame; False: drop it unread (its peer is over its budget)."""
        self.turn_left -= 1
        if self.limiter.check(peer, KIND, mono, cost=1.0 + nbytes // BYTES_PER_TOKEN) is None:
            self.turn_bytes -= nbytes
            return True
        self._drop(nbytes)
        return False

    def _drop(self, nbytes: int = 0) -> None:
        self.dropped += 1
        self.turn_drops += 1 + nbytes // DROP_BYTES_PER_FRAME

    def auth_failed(self, peer: str, mono: float) -> None:
        self.limiter.check(peer, KIND, mono, cost=AUTH_FAILURE_COST, partial=True)
        bucket = self.limiter.buckets.get((peer, KIND))
        if bucket is not None:  # the limiter refills from `at` on: nothing until the bar has passed
            bucket.at = max(bucket.at, mono + AUTH_FAILURE_BAR)
