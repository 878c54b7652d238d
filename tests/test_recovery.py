"""ffrtmp.master.recovery and ffrtmp.failures: whether and when a failed attempt is retried."""

from __future__ import annotations

import random

import pytest

from ffrtmp.failures import Failure, classify
from ffrtmp.master.recovery import IMMEDIATE, RETRYABLE, RetryPolicy

NOW = 1_700_000_000.0
POLICY = RetryPolicy(base=5.0, cap=300.0)


class UpperRandom(random.Random):
    """Jitter always at its top: backoff returns the undithered delay."""

    def uniform(self, a: float, b: float) -> float:
        return b


class LowerRandom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


# ---- backoff ----------------------------------------------------------------------------------------


def test_backoff_doubles_from_base_and_is_capped() -> None:
    delays = [POLICY.backoff(attempt, UpperRandom()) for attempt in range(1, 10)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]


def test_backoff_jitter_lower_bound_is_half_the_delay() -> None:
    delays = [POLICY.backoff(attempt, LowerRandom()) for attempt in range(1, 9)]
    assert delays == [2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 150.0, 150.0]


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 7, 8, 20])
def test_backoff_jitter_stays_within_half_to_full_delay(attempt: int) -> None:
    rng = random.Random(1234)
    delay = min(300.0, 5.0 * 2 ** (attempt - 1))
    samples = [POLICY.backoff(attempt, rng) for _ in range(500)]
    assert all(delay / 2 <= s <= delay for s in samples)
    assert max(samples) - min(samples) > delay / 4, "jitter should actually spread the retries"


def test_backoff_is_reproducible_with_a_seed() -> None:
    first = [POLICY.backoff(a, random.Random(42)) for a in range(1, 6)]
    second = [POLICY.backoff(a, random.Random(42)) for a in range(1, 6)]
    assert first == second


def test_backoff_attempt_zero_or_negative_uses_base() -> None:
    assert POLICY.backoff(0, UpperRandom()) == 5.0
    assert POLICY.backoff(-3, UpperRandom()) == 5.0


def test_backoff_stays_capped_for_huge_attempt_numbers() -> None:
    """Attempts grow without bound under repeated `jobs retry`; the delay must stay at the cap, not overflow."""
    assert POLICY.backoff(5000, UpperRandom()) == 300.0


def test_zero_base_means_no_delay() -> None:
    assert RetryPolicy(base=0.0, cap=300.0).backoff(3, random.Random(1)) == 0.0


def test_default_policy_uses_defaults() -> None:
    from ffrtmp import defaults

    policy = RetryPolicy()
    assert (policy.base, policy.cap) == (defaults.RETRY_BACKOFF_BASE, defaults.RETRY_BACKOFF_MAX)


# ---- next_try ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [Failure.INVALID_INPUT, Failure.CANCELED])
def test_non_retryable_failures_end_the_job(failure: Failure) -> None:
    assert POLICY.next_try(failure, attempts=1, max_retries=3, now=NOW, rng=random.Random(0)) is None


@pytest.mark.parametrize("failure", list(RETRYABLE))
def test_no_retry_once_the_budget_is_spent(failure: Failure) -> None:
    assert POLICY.next_try(failure, attempts=4, max_retries=3, now=NOW, rng=random.Random(0)) is None
    assert POLICY.next_try(failure, attempts=1, max_retries=0, now=NOW, rng=random.Random(0)) is None


@pytest.mark.parametrize("failure", list(RETRYABLE))
def test_last_retry_is_still_allowed(failure: Failure) -> None:
    assert POLICY.next_try(failure, attempts=3, max_retries=3, now=NOW, rng=random.Random(0)) is not None


def test_worker_lost_is_retried_at_once() -> None:
    for attempts in (1, 2, 3):
        assert POLICY.next_try(Failure.WORKER_LOST, attempts, max_retries=3, now=NOW, rng=random.Random(0)) == NOW


@pytest.mark.parametrize("failure", [Failure.ENCODER_ERROR, Failure.TIMEOUT, Failure.STALLED])
@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_job_failures_wait_for_the_backoff(failure: Failure, attempts: int) -> None:
    expected = NOW + POLICY.backoff(attempts, random.Random(99))
    assert POLICY.next_try(failure, attempts, max_retries=5, now=NOW, rng=random.Random(99)) == expected
    delay = min(300.0, 5.0 * 2 ** (attempts - 1))
    assert NOW + delay / 2 <= expected <= NOW + delay


def test_retry_sets_match_the_failure_kinds() -> None:
    assert {Failure.WORKER_LOST, Failure.TIMEOUT, Failure.STALLED, Failure.ENCODER_ERROR} == RETRYABLE
    assert {Failure.WORKER_LOST} == IMMEDIATE
    assert Failure.INVALID_INPUT not in RETRYABLE
    assert Failure.CANCELED not in RETRYABLE


# ---- classify ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", list(Failure))
def test_classify_known_labels(failure: Failure) -> None:
    assert classify(failure.value) is failure
    assert classify(failure) is failure


@pytest.mark.parametrize("label", ["bogus", "", None, 5, "WORKER_LOST", "worker lost", ["timeout"], {"x": 1}])
def test_classify_unknown_labels_are_encoder_errors(label: object) -> None:
    assert classify(label) is Failure.ENCODER_ERROR
