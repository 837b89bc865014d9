"""What the admin shows, read from the owning apps' selectors (every app is always installed).

Each function here translates one app's selector output into the small, typed shapes the pages
and charts use, so a page never reaches into another app's models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import Item
from apps.core.tenant_db import tenant_context
from apps.modeling import selectors as modeling_selectors
from apps.profiles.models import EndUser
from apps.serving import params as serving_params
from apps.serving import selectors as serving_selectors
from apps.serving import services as serving_services
from apps.slo import selectors as slo_selectors
from apps.slo.endpoints import CLASSES
from apps.tenancy.selectors import api_keys_for_tenant


@dataclass(frozen=True)
class EncodingProgress:
    total: int
    ready: int
    pending: int
    failed: int


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
    requests: int = 0


@dataclass(frozen=True)
class ErrorBudget:
    name: str
    # fraction of the window's error budget left, bounded to -1..1 (negative when overspent); None
    # while the class has too little traffic to be judged (``note`` says how much)
    remaining: float | None
    note: str = ""


@dataclass(frozen=True)
class PrivacyPoint:
    label: str
    spent: float
    run_label: str
    epsilon: float


@dataclass(frozen=True)
class PrivacyBudget:
    total: float
    spent: float  # within the renewal window when there is one
    delta: float | None
    points: list[PrivacyPoint] = field(default_factory=list)
    renewal_days: int | None = None
    next_renewal_at: datetime | None = None
    renewed_then: float = 0.0

    @property
    def remaining(self) -> float:
        return max(0.0, self.total - self.spent)

    @property
    def remaining_percent(self) -> int:
        """The "Left" bar: the share of the budget still left (0 when the budget is 0)."""
        return round(100 * self.remaining / self.total) if self.total > 0 else 0


@dataclass(frozen=True)
class Evaluation:
    model_version: str
    created: str
    metrics: dict[str, Any]  # numeric metrics only
    note: str = ""  # how they were measured, when the backend says


def encoding_progress(*, tenant_id: int) -> EncodingProgress:
    counts = catalog_selectors.catalog_status(tenant_id=tenant_id)
    return EncodingProgress(
        total=counts["items"], ready=counts["ready"], pending=counts["pending"], failed=counts["failed"]
    )


def objective_percentile(latency_target: float) -> str:
    """The percentile an objective bounds: "99% of requests under X ms" is "p99 <= X ms"."""
    return f"p{latency_target * 100:g}"


def latency_series(*, tenant_id: int, hours: int = 24) -> list[LatencySeries]:
    """Hourly p50/p95/p99 over the last ``hours`` per endpoint class, with each class's objective."""
    end = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return _latency_series(tenant_id, end - timedelta(hours=hours), end, 3600, "%H:%M")


@dataclass(frozen=True)
class TimeRange:
    """A range the objectives page charts: its length and the slot each point covers. Slots are
    whole minutes within the last 7 h (minute rows) and whole hours beyond (hour rows only)."""

    key: str
    seconds: int
    step_s: int
    label_format: str  # UTC


SLO_RANGES: dict[str, TimeRange] = {
    r.key: r
    for r in (
        TimeRange("1h", 3600, 60, "%H:%M"),
        TimeRange("6h", 6 * 3600, 300, "%H:%M"),
        TimeRange("24h", 86400, 3600, "%H:%M"),
        TimeRange("7d", 7 * 86400, 6 * 3600, "%m-%d %H:%M"),
        TimeRange("28d", 28 * 86400, 86400, "%m-%d"),  # the objective window
    )
}
DEFAULT_SLO_RANGE = "24h"


def slo_range(value: str | None) -> TimeRange | None:
    """The range a ``?range=`` value names, the default for none given, None for anything else
    (the caller answers 400 or falls back: never a 500 for a hand-edited URL)."""
    return SLO_RANGES.get(value or DEFAULT_SLO_RANGE)


def latency_series_for_range(*, tenant_id: int, time_range: TimeRange) -> list[LatencySeries]:
    """p50/p95/p99 per endpoint class over ``time_range``, its last slot holding now."""
    step = time_range.step_s
    end_s = (int(timezone.now().timestamp()) // step + 1) * step
    end = datetime.fromtimestamp(end_s, tz=UTC)
    return _latency_series(
        tenant_id, end - timedelta(seconds=time_range.seconds), end, step, time_range.label_format
    )


def _latency_series(
    tenant_id: int, start: datetime, end: datetime, step_s: int, label_format: str
) -> list[LatencySeries]:
    out = []
    for cls in CLASSES:
        series = slo_selectors.slo_timeseries(
            tenant_id=tenant_id, endpoint_class=cls, start=start, end=end, step_s=step_s
        )
        out.append(
            LatencySeries(
                endpoint_class=cls,
                labels=[p.start.strftime(label_format) for p in series.points],
                p50=[_ms(p.p50_ms) for p in series.points],
                p95=[_ms(p.p95_ms) for p in series.points],
                p99=[_ms(p.p99_ms) for p in series.points],
                objective_ms=series.objective.latency_threshold_ms,
                objective_percentile=objective_percentile(series.objective.latency_target),
                requests=sum(p.requests for p in series.points),
            )
        )
    return out


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def error_budgets(*, tenant_id: int) -> list[ErrorBudget]:
    """The 28-day error budget left per endpoint class and SLI (latency, availability): bounded to
    -100 %, and None with the reason while a class has too little traffic to be judged."""
    status = slo_selectors.slo_status_for_tenant(tenant_id=tenant_id)
    out = []
    for cls, state in status.classes.items():
        note = "" if state.judged else state.summary
        out.append(ErrorBudget(f"{cls} latency", state.latency_budget_remaining, note))
        out.append(ErrorBudget(f"{cls} availability", state.availability_budget_remaining, note))
    return out


FINISHED = frozenset({"succeeded", "rejected", "failed", "refused", "cancelled"})


@dataclass(frozen=True)
class TrainingRun:
    id: int
    status: str
    epsilon: float
    progress: float
    created_at: datetime
    finished_at: datetime | None
    metrics: dict[str, Any]
    model_version: str
    error: str
    mechanism: str = ""
    mechanisms: tuple[dict[str, Any], ...] = ()
    accountant: str = ""
    epsilon_spent: float | None = None
    gate: dict[str, Any] | None = None
    stage: str = ""  # what the worker is doing now ("DP-SGD epoch 3/10", "building HNSW index", ...)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _run(raw: dict[str, Any]) -> TrainingRun:
    """A run as ``modeling.selectors.run_repr`` gives it (the API's view of a run)."""
    version = raw["model_version"]
    release = raw["release"]
    return TrainingRun(
        id=int(raw["id"]),
        status=str(raw["status"]),
        epsilon=float(raw["epsilon"]),
        progress=max(0.0, min(1.0, float(raw["progress"]))),
        created_at=raw["created_at"],
        finished_at=raw["finished_at"],
        metrics=dict(raw["metrics"]),
        model_version=f"v{version}" if version is not None else "",
        error=str(raw["error"]),
        mechanism=str(raw["mechanism"] or ""),
        mechanisms=tuple(_mechanism_row(m) for m in release.get("mechanisms", [])),
        accountant=str(release.get("accountant", "") or ""),
        epsilon_spent=raw["epsilon_spent"],
        gate=dict(raw["gate"]) or None,
        stage=str(raw["stage"]),
    )


def _mechanism_row(mechanism: dict[str, Any]) -> dict[str, Any]:
    """One released mechanism for the run page: its name, noise and standalone ε, rounded for reading."""
    noise = mechanism.get("noise_multiplier", mechanism.get("sigma", mechanism.get("noise")))
    alone = mechanism.get("epsilon_alone")
    details = {
        k: v
        for k, v in mechanism.items()
        if k in ("sample_rate", "steps", "epochs", "clip_norm", "expected_batch", "items", "rank", "cap")
    }
    return {
        "name": str(mechanism.get("name", "")),
        "noise": f"{noise:.4g}" if isinstance(noise, int | float) else str(noise or ""),
        "epsilon_alone": f"{alone:.3g}" if isinstance(alone, int | float) else "",
        "details": ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in details.items()
        ),
    }


def training_runs(*, tenant_id: int, limit: int = 20) -> list[TrainingRun]:
    return [_run(r) for r in modeling_selectors.training_runs_for_tenant(tenant_id=tenant_id, limit=limit)]


def training_run(*, tenant_id: int, run_id: int) -> TrainingRun:
    """One run of this tenant; ``NotFound`` (404) for another tenant's run or none."""
    return _run(modeling_selectors.training_run_get(tenant_id=tenant_id, run_id=run_id))


def _label(value: datetime | None) -> str:
    return value.strftime("%m-%d %H:%M") if value is not None else ""


def privacy_budget(*, tenant_id: int) -> PrivacyBudget:
    """The tenant's budget and its ledger as a running total: one point per charged release
    (``modeling.selectors.privacy_budget`` lists the ledger oldest first)."""
    raw = modeling_selectors.privacy_budget(tenant_id=tenant_id)
    spent, points = 0.0, []
    for entry in raw["ledger"]:
        epsilon = float(entry["epsilon"])
        spent += epsilon
        run_id, kind = entry["run_id"], str(entry["kind"])
        points.append(
            PrivacyPoint(
                label=_label(entry["created_at"]),
                spent=round(spent, 6),
                run_label=(f"refund of run #{run_id}" if kind == "refund" else f"run #{run_id}")
                if run_id is not None
                else kind,
                epsilon=round(epsilon, 6),
            )
        )
    return PrivacyBudget(
        total=float(raw["epsilon_total"]),
        spent=float(raw["epsilon_spent"]),
        delta=float(raw["delta"]),
        points=points,
        renewal_days=raw["renewal_days"],
        next_renewal_at=raw["next_renewal_at"],
        renewed_then=float(raw["epsilon_renewed_then"]),
    )


def latest_evaluation(*, tenant_id: int) -> Evaluation | None:
    """The offline metrics of the newest model version that has any (``modeling.selectors.latest_evaluation``)."""
    raw = modeling_selectors.latest_evaluation(tenant_id)
    if raw is None:
        return None
    metrics = dict(raw["metrics"] or {})
    numeric = {
        k: v for k, v in sorted(metrics.items()) if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return Evaluation(
        model_version=f"v{raw['model_version']}",
        created=_label(raw["created_at"]),
        metrics=numeric,
        note=str(metrics.get("protocol") or ""),
    )


@dataclass(frozen=True)
class CatalogPage:
    items: list[Item]
    next_cursor: int | None


def catalog_items(
    *, tenant_id: int, q: str, status: str, after_pk: int | None, limit: int = 50
) -> CatalogPage:
    """Items for the catalogue browser, by creation order; ``q`` matches titles (case-insensitive).

    Browsing goes through ``catalog.selectors.items_page``. The catalog app has no title-search
    selector yet, so a search reads its ``Item`` rows here, under the tenant's RLS context, with the
    same keyset paging.
    """
    if not q:
        page = catalog_selectors.items_page(
            tenant_id=tenant_id, after_pk=after_pk, limit=limit, status=status or None
        )
        return CatalogPage(items=page.items, next_cursor=page.next_cursor)
    with tenant_context(tenant_id):
        qs = Item.objects.filter(tenant_id=tenant_id, title__icontains=q).order_by("pk")
        if status:
            qs = qs.filter(encoding_status=status)
        if after_pk is not None:
            qs = qs.filter(pk__gt=after_pk)
        rows = list(qs[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return CatalogPage(items=rows, next_cursor=rows[-1].pk if more and rows else None)


@dataclass(frozen=True)
class EndUserRow:
    pk: int
    pseudonym: str  # hex of the stored HMAC: the only name the admin ever shows
    created_at: Any
    events: int
    attributes: int


@dataclass(frozen=True)
class EndUserPage:
    rows: list[EndUserRow]
    next_cursor: int | None
    total: int


def end_users_page(*, tenant_id: int, after_pk: int | None, limit: int = 50) -> EndUserPage:
    """End users by pseudonym, newest first (keyset on the pk), with how much is held about each.

    The profiles app has no listing selector (its selectors serve the hot path by client id), so
    this reads its ``EndUser`` rows here, under the tenant's RLS context; nothing is decrypted.
    """
    with tenant_context(tenant_id):
        qs = EndUser.objects.filter(tenant_id=tenant_id).order_by("-pk")
        total = qs.count()
        if after_pk is not None:
            qs = qs.filter(pk__lt=after_pk)
        found = list(
            qs.annotate(
                n_events=Count("events", distinct=True), n_attributes=Count("attributes", distinct=True)
            ).values_list("pk", "pseudonym", "created_at", "n_events", "n_attributes")[: limit + 1]
        )
    more = len(found) > limit
    rows = [
        EndUserRow(int(pk), bytes(p).hex(), created, int(ev), int(at))
        for pk, p, created, ev, at in found[:limit]
    ]
    return EndUserPage(rows=rows, next_cursor=rows[-1].pk if more and rows else None, total=total)


# --- API keys by name ---------------------------------------------------------------------------


def api_key_names(*, tenant_id: int) -> dict[str, str]:
    """Every key of the tenant (revoked ones too) as prefix -> human name, to name keys wherever
    only their prefix was recorded (the audit trail's ``key:<prefix>`` actors and api_key targets)."""
    with tenant_context(tenant_id):
        return dict(api_keys_for_tenant(tenant_id=tenant_id).values_list("prefix", "name"))


def key_prefix_of(actor: str) -> str | None:
    """The key prefix of an API-key actor (``key:<prefix>``, as ``KeyPrincipal.actor`` writes it), else None."""
    return actor[4:] if actor.startswith("key:") and len(actor) > 4 else None


@dataclass(frozen=True)
class AuditRow:
    """One audit event as the trail shows it: the event, plus the names of the keys it mentions."""

    event: Any
    actor_key_name: str | None  # the actor was an API key with this name
    target_key_name: str | None  # the target is an API key with this name


def audit_rows(events: Any, key_names: dict[str, str]) -> list[AuditRow]:
    rows = []
    for event in events:
        prefix = key_prefix_of(str(event.actor))
        target = str(event.target_id) if event.target_type == "api_key" else None
        rows.append(
            AuditRow(
                event=event,
                actor_key_name=key_names.get(prefix) if prefix else None,
                target_key_name=key_names.get(target) if target else None,
            )
        )
    return rows


# --- ranked items with their titles (recommendation preview, search by meaning) -----------------


@dataclass(frozen=True)
class RankedItem:
    external_id: str
    score: float
    item: Item | None  # the catalogue's Item row; None when it was deleted after it was ranked


def _titled(tenant_id: int, ranked: list[dict[str, Any]]) -> list[RankedItem]:
    rows = catalog_selectors.items_by_external_ids(tenant_id, [str(r["id"]) for r in ranked])
    return [
        RankedItem(external_id=str(r["id"]), score=float(r["score"]), item=rows.get(str(r["id"])))
        for r in ranked
    ]


@dataclass(frozen=True)
class RecommendationPreview:
    strategy: str
    model_version: int | None
    note: str | None
    items: list[RankedItem]


def recommendation_preview(*, tenant_id: int, user_ref: str, actor: str) -> RecommendationPreview:
    """The top 10 the API's ``/api/v1/recommendations`` gives this user now, with titles; audited by
    ``serving.services.recommendations_preview`` (``DomainError`` for an id the API would refuse)."""
    ranked = serving_services.recommendations_preview(tenant_id=tenant_id, user_ref=user_ref, actor=actor)
    return RecommendationPreview(
        strategy=ranked.strategy,
        model_version=ranked.model_version,
        note=ranked.note,
        items=_titled(tenant_id, ranked.items),
    )


@dataclass(frozen=True)
class MeaningResults:
    items: list[RankedItem]
    note: str | None  # the search's own caveat (a mostly-CJK query), when it has one


def catalog_by_meaning(*, tenant_id: int, q: str, status: str, k: int = 20) -> MeaningResults:
    """The items nearest to ``q`` by content vector, best first: the API's ``/api/v1/search``
    (``serving.selectors.search_items``: the query encoded by the encoder the tenant's items went
    through, then the HNSW k-NN), unpersonalised. ``status`` keeps items in that encoding state.
    ``DomainError`` for a query the API would refuse, or when the encoder is unavailable (503)."""
    ranked = serving_selectors.search_items(tenant_id=tenant_id, query=serving_params.parse_query(q), k=k)
    found = _titled(tenant_id, ranked.items)
    if status:
        found = [r for r in found if r.item is not None and r.item.encoding_status == status]
    return MeaningResults(items=found, note=ranked.note)
