"""How an attempt can fail. Workers label failures; the master decides what each one means for a retry."""

from __future__ import annotations

from enum import StrEnum


class Failure(StrEnum):
    WORKER_LOST = "worker_lost"
    TIMEOUT = "timeout"
    STALLED = "stalled"
    ENCODER_ERROR = "encoder_error"
    INVALID_INPUT = "invalid_input"
    CANCELED = "canceled"


def classify(value: object) -> Failure:
    """A worker's failure label; anything unknown counts as an encoder error (retryable, never lost)."""
    try:
        return Failure(str(value))
    except ValueError:
        return Failure.ENCODER_ERROR
