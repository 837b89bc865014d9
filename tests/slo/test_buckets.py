"""Log-spaced buckets: percentiles and shares read back within one bucket width of the truth."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.slo import buckets
from apps.slo.endpoints import CLASSES, endpoint_class, status_class

WIDTH = 1.281  # R10 neighbours differ by at most 28% (1.25 -> 1.6)


def counts_of(samples: list[float]) -> list[int]:
    counts = buckets.empty()
    for sample in samples:
        counts[buckets.bucket_index(sample)] += 1
    return counts


def exact_quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def test_bounds_are_increasing_log_spaced_and_hold_the_usual_thresholds():
    ratios = [b / a for a, b in zip(buckets.BOUNDS_MS, buckets.BOUNDS_MS[1:], strict=False)]
    assert all(1.2 <= r <= WIDTH for r in ratios)
    for threshold in (1.0, 10.0, 50.0, 100.0, 200.0, 250.0, 500.0, 1000.0):
        assert threshold in buckets.BOUNDS_MS
    assert len(buckets.BOUNDS_MS) + 1 == buckets.N_BUCKETS


def test_a_duration_on_a_bound_falls_in_that_bound_s_bucket():
    i = buckets.BOUNDS_MS.index(50.0)
    assert buckets.bucket_index(50.0) == i
    assert buckets.bucket_index(50.0001) == i + 1
    assert buckets.bucket_index(0.0) == 0
    assert buckets.bucket_index(5e6) == len(buckets.BOUNDS_MS)  # overflow


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 400),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_a_percentile_lands_within_one_bucket_of_the_exact_quantile(seed, n, q):
    rng = random.Random(seed)
    samples = [math.exp(rng.uniform(math.log(0.2), math.log(20_000.0))) for _ in range(n)]
    estimate = buckets.percentile(counts_of(samples), q)
    truth = exact_quantile(samples, q)
    assert estimate is not None
    assert truth / WIDTH <= estimate <= truth * WIDTH


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), threshold=st.sampled_from(buckets.BOUNDS_MS[:60])
)
def test_the_share_within_a_bound_is_exact(seed, n, threshold):
    rng = random.Random(seed)
    samples = [math.exp(rng.uniform(math.log(0.2), math.log(20_000.0))) for _ in range(n)]
    share = buckets.share_at_or_below(counts_of(samples), threshold)
    assert share == pytest.approx(sum(s <= threshold for s in samples) / n)


def test_a_threshold_inside_a_bucket_is_interpolated_between_its_bounds():
    counts = counts_of([45.0] * 10)  # all in (40, 50]
    assert buckets.count_at_or_below(counts, 40.0) == 0
    assert buckets.count_at_or_below(counts, 50.0) == 10
    assert 0 < buckets.count_at_or_below(counts, 45.0) < 10


def test_no_observations_has_no_percentile_and_no_share():
    assert buckets.percentile(buckets.empty(), 0.99) is None
    assert buckets.share_at_or_below(buckets.empty(), 50.0) is None


def test_the_overflow_bucket_reports_the_last_bound_and_counts_as_slow():
    counts = counts_of([2e6, 2e6])
    assert buckets.percentile(counts, 0.5) == buckets.BOUNDS_MS[-1]
    assert buckets.share_at_or_below(counts, 1e6) == 0.0


def test_export_bounds_are_a_subset_so_cumulative_counts_are_exact():
    assert set(buckets.EXPORT_BOUNDS_MS) <= set(buckets.BOUNDS_MS)
    assert buckets.EXPORT_BOUNDS_MS[-1] == 100_000.0


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/v1/recommendations", "recommend"),
        ("GET", "/api/v1/recommendations/", "recommend"),
        ("GET", "/api/v1/items/i-1/similar", "recommend"),
        ("GET", "/api/v1/search", "search"),
        ("POST", "/api/v1/events", "ingest"),
        ("GET", "/api/v1/events", "other"),
        ("POST", "/api/v1/items", "ingest"),
        ("GET", "/api/v1/items/i-1", "other"),
        ("DELETE", "/api/v1/items/i-1", "other"),
        ("PUT", "/api/v1/users/u-1", "ingest"),
        ("GET", "/api/v1/users/u-1", "other"),
        ("DELETE", "/api/v1/users/u-1", "other"),
        ("GET", "/api/v1/slo", "other"),
        ("GET", "/admin/", "other"),
        ("GET", "/metrics", "other"),
    ],
)
def test_endpoint_classes_come_from_method_and_url(method, path, expected):
    assert endpoint_class(method, path) == expected
    assert expected in CLASSES


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), (201, "2xx"), (304, "3xx"), (404, "4xx"), (429, "429"), (500, "5xx"), (503, "5xx")],
)
def test_status_classes(status, expected):
    assert status_class(status) == expected
