"""Fixed log-spaced latency buckets and what can be read back from them (percentiles, share good).

The upper bounds follow the R10 preferred-number series (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8
per decade) from 0.1 ms to 1000 s, so neighbouring bounds differ by 25-28% and the usual
thresholds (50, 100, 200, 250, 500 ms) are exact bucket bounds. Bucket ``i`` holds durations in
``(BOUNDS_MS[i-1], BOUNDS_MS[i]]``; the last bucket (index ``len(BOUNDS_MS)``) holds everything
slower than the last bound.

Within a bucket, durations are assumed log-uniform: a percentile or a threshold that falls inside
a bucket is interpolated geometrically, so its error is at most one bucket width (28%) and
exact whenever the threshold is a bound.

>>> bucket_index(50.0) == BOUNDS_MS.index(50.0)
True
>>> counts = [0] * N_BUCKETS
>>> counts[bucket_index(10.0)] = 99
>>> counts[bucket_index(300.0)] = 1
>>> round(share_at_or_below(counts, 100.0), 2)
0.99
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence

_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0)
_DECADES = range(-1, 6)  # 0.1 ms .. 800 000 ms, then the closing 1 000 000 ms

BOUNDS_MS: tuple[float, ...] = (*(round(m * 10.0**d, 6) for d in _DECADES for m in _R10), 1_000_000.0)
N_BUCKETS = len(BOUNDS_MS) + 1  # plus the overflow bucket

# The coarser R5 subset (1, 1.6, 2.5, 4, 6.3 per decade, up to 100 s) exported to Prometheus, to
# keep the series count per tenant modest; cumulative counts at these bounds are exact.
EXPORT_BOUNDS_MS: tuple[float, ...] = tuple(
    b for i, b in enumerate(BOUNDS_MS) if i % 2 == 0 and b <= 100_000.0
)


def bucket_index(duration_ms: float) -> int:
    """The bucket a duration falls in (bisect over 71 bounds: well under a microsecond)."""
    return bisect_left(BOUNDS_MS, duration_ms)


def empty() -> list[int]:
    return [0] * N_BUCKETS


def add_into(target: list[int], other: Sequence[int]) -> None:
    for i, value in enumerate(other):
        if value:
            target[i] += int(value)


def _lower(i: int) -> float:
    return 0.0 if i == 0 else BOUNDS_MS[i - 1]


def _interpolate(i: int, fraction: float) -> float:
    """The duration a ``fraction`` of the way through bucket ``i`` (geometric; linear in bucket 0)."""
    if i >= len(BOUNDS_MS):
        return BOUNDS_MS[-1]  # overflow: all we know is "slower than the last bound"
    low, high = _lower(i), BOUNDS_MS[i]
    if low <= 0.0:
        return high * fraction
    return float(low * (high / low) ** fraction)


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) in ms, or None with no observations."""
    if not 0.0 < q <= 1.0:
        raise ValueError("q must be in (0, 1]")
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank:
            return _interpolate(i, (rank - seen) / count)
        seen += count
    return _interpolate(len(counts) - 1, 1.0)  # pragma: no cover - rank <= total always lands above


def count_at_or_below(counts: Sequence[int], threshold_ms: float) -> float:
    """How many observations were at or below ``threshold_ms`` (interpolated inside one bucket)."""
    i = bucket_index(threshold_ms)  # BOUNDS_MS[i-1] < threshold <= BOUNDS_MS[i]
    below = float(sum(counts[:i]))
    if i >= len(BOUNDS_MS) or counts[i] == 0:
        return below  # above the last bound, the overflow bucket is counted as slower
    low, high = _lower(i), BOUNDS_MS[i]
    if threshold_ms >= high:
        fraction = 1.0
    elif low <= 0.0:
        fraction = threshold_ms / high
    else:
        fraction = math.log(threshold_ms / low) / math.log(high / low)
    return below + counts[i] * max(0.0, min(1.0, fraction))


def share_at_or_below(counts: Sequence[int], threshold_ms: float) -> float | None:
    total = sum(counts)
    if total <= 0:
        return None
    return count_at_or_below(counts, threshold_ms) / total
