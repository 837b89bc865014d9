"""Privacy budget and ledger, training runs, model versions, the active-model pointer, DP popularity.

- ``PrivacyBudget``: one row per tenant (ε_total, δ per release); locked ``FOR UPDATE`` while a
  release is charged, so concurrent requests serialise on it.
- ``LedgerEntry``: append-only (runtime role: INSERT/SELECT only; triggers refuse UPDATE, DELETE
  and TRUNCATE even for the owner). One row per charged release, written in the same transaction
  as the run or popularity release it pays for, *before* any computation.
- ``LedgerMechanism``: append-only too; what the worker actually ran for a charged entry (noise
  multiplier, sampling rate, steps, accountant's ε, users...), inserted once when known.
- ``TrainingRun``: status, progress and heartbeat of one DP training run (worker-written).
- ``ModelVersion``: the exported weights (npz in ``bytea``, SHA-256 checksum), the item universe
  with its popularity coordinate, the feature configuration, offline metrics.
- ``ActiveModel``: the per-tenant pointer serving reads; switched in one transaction once the
  version's served item vectors (``modeling_served_vector``, raw SQL, see ``served.py``) are complete.
- ``PopularityRelease`` + ``PopularityScore``: DP noisy item counts for cold start.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.tenancy.models import Tenant, TenantOwned


class PrivacyBudget(TenantOwned):
    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    epsilon_total = models.FloatField()
    delta = models.FloatField()  # per-release cap; each release uses min(delta, 1/N_users)
    # None: epsilon_total is a lifetime budget. N: epsilon_total is what the releases of any N-day
    # window may spend together (a rolling renewal; docs/privacy-model.md, "Budget policy").
    renewal_days = models.PositiveIntegerField(null=True, blank=True)
    # Shortening the window (or leaving a lifetime budget) must not free what earlier charges were
    # promised: charges made up to carry_before keep counting under the longest window that was
    # ever in force for them (carry_days; None with carry_before set: for ever).
    carry_before = models.DateTimeField(null=True, blank=True)
    carry_days = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"budget of tenant {self.tenant_id}: eps {self.epsilon_total}, delta {self.delta}"


class ReleaseKind(models.TextChoices):
    TRAINING = "training"
    POPULARITY = "popularity"
    # a reversing entry (negative ε and δ, dated like the charge it reverses) for a run that failed
    # before it released anything (services.ledger_refund_unreleased)
    REFUND = "refund"


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    REJECTED = (
        "rejected"  # trained and charged, kept inactive: it did not beat DP popularity / the active version
    )
    FAILED = "failed"


class TrainingRun(TenantOwned):
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    epsilon = models.FloatField()  # total ε charged for this run (popularity share + DP-SGD)
    delta = models.FloatField()  # total δ charged: min(tenant δ, 1/N_users) at request time
    n_users = models.PositiveIntegerField()  # users with events at request time
    config = models.JSONField(default=dict)  # ModelConfig fields + split + seed
    seed = models.BigIntegerField(default=0)
    actor = models.CharField(max_length=200, blank=True)
    epoch = models.PositiveIntegerField(default=0)
    epochs = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    loss_history = models.JSONField(default=list, blank=True)
    stage = models.CharField(
        max_length=64, blank=True
    )  # what the worker is doing now (apps.modeling.progress)
    claim_token = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    # the realised privacy spend (accountant's numbers; never above the charge)
    epsilon_spent = models.FloatField(null=True, blank=True)
    epsilon_sgd = models.FloatField(null=True, blank=True)
    epsilon_pop = models.FloatField(null=True, blank=True)
    delta_used = models.FloatField(null=True, blank=True)
    n_users_trained = models.PositiveIntegerField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    release = models.JSONField(default=dict, blank=True)  # what ran: design, mechanisms with ε/σ, accountant
    gate = models.JSONField(default=dict, blank=True)  # the activation decision and its reason
    model_version = models.ForeignKey(
        "ModelVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="modeling_run_tenant_created"),
            models.Index(
                fields=["status", "heartbeat_at"],
                name="modeling_run_status_hb",
                condition=models.Q(status__in=["queued", "running"]),
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"


class LedgerEntry(TenantOwned):
    """One charged release. Append-only: never updated or deleted, by any role or API."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=12, choices=ReleaseKind.choices)
    run = models.ForeignKey(TrainingRun, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    epsilon = models.FloatField()
    delta = models.FloatField()
    users = models.PositiveIntegerField()
    actor = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)  # planned mechanism: split, q, epochs, C, accountant

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="modeling_ledger_tenant_time")]

    def __str__(self) -> str:
        return f"ledger {self.pk}: {self.kind} eps {self.epsilon}"


class LedgerMechanism(TenantOwned):
    """What was actually run for a charged entry (append-only; inserted at most once per entry)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="mechanism")
    created_at = models.DateTimeField(default=timezone.now)
    epsilon = (
        models.FloatField()
    )  # what the release costs: "factors" GDP-composed ε; "dpsgd" accountant ε + popularity ε
    delta = models.FloatField()
    noise_multiplier = models.FloatField(null=True, blank=True)
    sample_rate = models.FloatField(null=True, blank=True)
    epochs = models.PositiveIntegerField(null=True, blank=True)
    steps = models.PositiveIntegerField(null=True, blank=True)
    clip_norm = models.FloatField(null=True, blank=True)
    users = models.PositiveIntegerField()
    accountant = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"mechanism of ledger {self.entry_id}"


class VersionStatus(models.TextChoices):
    MATERIALISING = "materialising"
    READY = "ready"  # vectors complete, not (yet) active
    ACTIVE = "active"
    PREVIOUS = "previous"  # kept for rollback, vectors still served
    RETIRED = "retired"  # vectors dropped
    REJECTED = "rejected"  # kept inactive by the activation gate (arrays only, no served vectors)
    FAILED = "failed"


class ModelVersion(TenantOwned):
    version = models.PositiveIntegerField()
    run = models.ForeignKey(TrainingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(
        max_length=14, choices=VersionStatus.choices, default=VersionStatus.MATERIALISING
    )
    blob = models.BinaryField()  # npz: weights ("w:" + name), item_pks, extras
    checksum = models.CharField(max_length=64)  # SHA-256 of blob
    feature_config = models.JSONField()
    model_config = models.JSONField(default=dict)
    item_dim = models.PositiveIntegerField()
    n_items = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    # an activation that re-materialises the version: when it was asked for, and the status to go
    # back to if its worker never finishes (lifecycle.activations_reap)
    activation_requested_at = models.DateTimeField(null=True, blank=True)
    activation_restore = models.CharField(max_length=14, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "version"], name="modeling_version_unique")]

    def __str__(self) -> str:
        return f"model v{self.version} of tenant {self.tenant_id} ({self.status})"


class ActiveModel(TenantOwned):
    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    version = models.PositiveIntegerField()
    previous_version = models.PositiveIntegerField(null=True, blank=True)
    switched_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"tenant {self.tenant_id} serves v{self.version}"


class PopularityRelease(TenantOwned):
    created_at = models.DateTimeField(default=timezone.now)
    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey(TrainingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    epsilon = models.FloatField()
    delta = models.FloatField()
    sigma = models.FloatField()
    cap = models.PositiveIntegerField()
    n_users = models.PositiveIntegerField()
    n_items = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"], name="modeling_poprel_tenant_time")]

    def __str__(self) -> str:
        return f"popularity release {self.pk} (eps {self.epsilon})"


class PopularityScore(TenantOwned):
    """Noisy capped count of one item in one release (post-processing of the DP release)."""

    release = models.ForeignKey(PopularityRelease, on_delete=models.CASCADE, related_name="scores")
    item = models.ForeignKey("catalog.Item", on_delete=models.CASCADE, related_name="+")
    score = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["release", "-score"], name="modeling_popscore_rank")]

    def __str__(self) -> str:
        return f"{self.item_id}: {self.score:.2f}"


class Cadence(models.TextChoices):
    OFF = "off"
    DAILY = "daily"
    WEEKLY = "weekly"
    EVENTS = "events"  # when min_new_events new events arrived since the last scheduled run (at most daily)


class RetrainSchedule(TenantOwned):
    """When the beat task ``sotto.modeling.retrain_due`` starts a run for the tenant, and with what ε.

    Each scheduled run is charged and gated like any other; ``last_error`` is what the admin is
    alerted with when a scheduled start was refused (budget, too few users, settings)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    cadence = models.CharField(max_length=8, choices=Cadence.choices, default=Cadence.OFF)
    epsilon_per_run = models.FloatField(default=1.0)
    min_new_events = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)  # a run started, or a start refused
    last_event_id = models.BigIntegerField(default=0)  # newest profiles_userevent id at that attempt
    last_run = models.ForeignKey(
        TrainingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"retraining of tenant {self.tenant_id}: {self.cadence}"
