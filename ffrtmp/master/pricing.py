"""What a completed job cost, priced by the master (`--energy-price`, `--cpu-hour-price`, `--currency`).

    cost = energy_joules / 3.6e6 × energy price per kWh  +  cpu_seconds / 3600 × CPU-hour price

Each term is counted only when the master has its price and the worker measured its figure; with neither, the
job has no `cost`. The master owns `cost`, `currency` and `cost_basis`: a worker's own values for them are
dropped (a worker must not set what a tenant is billed). A figure the report aggregates that is not a finite
number is dropped too, so a bad value costs its own figure, never the report's average.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ffrtmp.errors import InvalidInput
from ffrtmp.master.store.report import NUMBER_KEYS

JOULES_PER_KWH = 3.6e6
MAX_PRICE = 1e6
"""A sanity bound: no real price per kWh or CPU-hour comes near it, a typo (an extra 0s) might."""
DEFAULT_CURRENCY = "EUR"
PRICED_KEYS = ("cost", "currency", "cost_basis")
"""The metrics keys only the master writes."""
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _price(value: str | float | None, field: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        price = float(value)
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not a number (a price such as 0.25)") from None
    if not math.isfinite(price) or not 0 <= price <= MAX_PRICE:
        raise InvalidInput(field, f"{value!r} must be a price from 0 to {MAX_PRICE:g}")
    return price


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past float's range
        return None
    return number if math.isfinite(number) else None


def _measured(metrics: dict[str, Any], key: str) -> float | None:
    """A worker's figure when it is a finite, non-negative number (it came over the network)."""
    value = _number(metrics.get(key))
    return value if value is not None and value >= 0 else None


@dataclass(frozen=True)
class Pricing:
    energy_per_kwh: float | None = None
    cpu_hour: float | None = None
    currency: str = DEFAULT_CURRENCY

    @classmethod
    def parse(cls, energy_price: str | float | None, cpu_hour_price: str | float | None,
              currency: str | None) -> Pricing:
        """The master's options, checked: a bad one is an InvalidInput naming its flag."""
        code = (currency or DEFAULT_CURRENCY).strip().upper()
        if not _CURRENCY.match(code):
            raise InvalidInput("currency", f"{currency!r} must be a three-letter currency code such as EUR or USD")
        return cls(_price(energy_price, "energy-price"), _price(cpu_hour_price, "cpu-hour-price"), code)

    def apply(self, metrics: dict[str, Any], status: str) -> dict[str, Any]:
        """The metrics of an attempt's RESULT as the master stores them: its own keys replaced, and a
        completed job's cost added from the figures it has prices for."""
        out = {key: value for key, value in metrics.items()
               if key not in PRICED_KEYS and (key not in NUMBER_KEYS or _number(value) is not None)}
        if status != "completed":
            return out
        cost, basis = 0.0, []
        joules = _measured(out, "energy_joules")
        if self.energy_per_kwh is not None and joules is not None:
            cost += joules / JOULES_PER_KWH * self.energy_per_kwh
            basis.append("energy")
        cpu = _measured(out, "cpu_seconds")
        if self.cpu_hour is not None and cpu is not None:
            cost += cpu / 3600 * self.cpu_hour
            basis.append("cpu")
        if basis:
            out.update(cost=round(cost, 12), currency=self.currency, cost_basis="+".join(basis))
        return out
