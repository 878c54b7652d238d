"""RQ: the no-op job function (workers import it by its dotted name)."""

from benchtask import record


def noop(tag: str) -> None:
    record(tag)
