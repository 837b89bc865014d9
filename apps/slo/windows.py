"""What a window of histogram rows says: bucket counts per status class, percentiles, good shares, burn rates.

Two SLIs per endpoint class:
- **latency**: of the requests the tenant was served (status < 500, throttled 429s excluded),
  the share answered within the threshold;
- **availability**: of the requests not throttled, the share that did not fail with a 5xx.
Throttled requests (429) are the client exceeding its own rate limit: they count in neither SLI
(they are visible in ``throttled`` and in ``/metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.slo import buckets


@dataclass
class WindowCounts:
    by_status: dict[str, list[int]] = field(default_factory=dict)
    sum_ms: float = 0.0

    def add(self, status_class: str, bucket: int, count: int) -> None:
        counts = self.by_status.get(status_class)
        if counts is None:
            counts = self.by_status[status_class] = buckets.empty()
        counts[bucket] += count

    def _total(self, status_class: str) -> int:
        return sum(self.by_status.get(status_class, ()))

    @property
    def requests(self) -> int:
        return sum(sum(c) for c in self.by_status.values())

    @property
    def throttled(self) -> int:
        return self._total("429")

    @property
    def errors(self) -> int:
        return self._total("5xx")

    @property
    def served_counts(self) -> list[int]:
        """Bucket counts of the latency SLI's population (2xx, 3xx, 4xx)."""
        out = buckets.empty()
        for status_class in ("2xx", "3xx", "4xx"):
            if status_class in self.by_status:
                buckets.add_into(out, self.by_status[status_class])
        return out

    @property
    def served(self) -> int:
        return sum(self.served_counts)

    def latency_good(self, threshold_ms: float) -> float:
        return buckets.count_at_or_below(self.served_counts, threshold_ms)

    def share_good(self, threshold_ms: float) -> float | None:
        served = self.served
        return None if served == 0 else self.latency_good(threshold_ms) / served

    def availability(self) -> float | None:
        population = self.requests - self.throttled
        return None if population == 0 else 1.0 - self.errors / population

    def latency_burn_rate(self, threshold_ms: float, target: float) -> float | None:
        """How fast the latency budget burns: 1.0 spends exactly the budget over the objective window."""
        share = self.share_good(threshold_ms)
        return None if share is None else (1.0 - share) / (1.0 - target)

    def availability_burn_rate(self, target: float) -> float | None:
        availability = self.availability()
        return None if availability is None else (1.0 - availability) / (1.0 - target)

    def percentile(self, q: float) -> float | None:
        return buckets.percentile(self.served_counts, q)

    @property
    def sample(self) -> int:
        """The requests an objective is judged on: every one not throttled (what the availability
        SLI counts; the latency SLI counts these less the 5xx)."""
        return self.requests - self.throttled


# How far below zero a shown budget goes: -1.0 is "spent twice over". Past that the figure says
# nothing more a reader can act on (five slow requests once read -4900 %); the unclamped value
# stays in the API as ``*_budget_remaining_raw``.
BUDGET_FLOOR = -1.0


def budget_remaining(burn_rate: float | None) -> float:
    """Share of the objective window's error budget left, given the burn rate over that whole window.

    1.0 = untouched, 0.0 = spent exactly, negative = overspent (unbounded: see ``clamp_budget``);
    no traffic leaves it untouched.
    """
    return 1.0 if burn_rate is None else 1.0 - burn_rate


def clamp_budget(remaining: float) -> float:
    """The budget left as shown: bounded to [``BUDGET_FLOOR``, 1.0] (-100 % reads "exhausted").

    >>> clamp_budget(-48.0), clamp_budget(0.25)
    (-1.0, 0.25)
    """
    return max(BUDGET_FLOOR, min(1.0, remaining))
