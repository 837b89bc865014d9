"""What the admin calls in each backend app. A page or dashboard panel is switched on only when
its contract is met (the modules exist and define every function named), so an app that has not
shipped, or ships under other names, leaves its section hidden (404) instead of half-working."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from apps.core.modules import module_exists


@dataclass(frozen=True)
class Contract:
    label: str
    functions: tuple[tuple[str, tuple[str, ...]], ...]

    def met(self) -> bool:
        for module, names in self.functions:
            if not module_exists(module):
                return False
            loaded = importlib.import_module(module)
            if not all(callable(getattr(loaded, name, None)) for name in names):
                return False
        return True


def backend(module: str) -> Any:
    """A backend module the admin reaches only through a met contract (so it is typed loosely here)."""
    return importlib.import_module(module)


CATALOG = Contract("Catalogue encoding (catalog app)", (("apps.catalog.selectors", ("catalog_status", "items_page")),))
SLO = Contract(
    "Latency and error budget (SLO app)",
    (
        ("apps.slo.selectors", ("slo_status_for_tenant", "slo_timeseries", "slo_objectives_for_tenant")),
        ("apps.slo.services", ("slo_objective_set", "slo_objective_reset")),
    ),
)
PROFILES = Contract("End users (profiles app)", (("apps.profiles.services", ("user_export",)),))
# The recommendation preview (end users page) and search by meaning (catalogue page) call the API's
# own serving path; without it those two parts are left off their pages.
SERVING = Contract(
    "Recommendation preview and search by meaning (serving app)",
    (
        ("apps.serving.services", ("recommendations_preview",)),
        ("apps.serving.selectors", ("search_items",)),
        ("apps.serving.params", ("parse_query",)),
    ),
)
AUDIT = Contract(
    "Audit trail (audit app)",
    (
        ("apps.audit.selectors", ("audit_events", "audit_public_key", "audit_verifier_script", "audit_verifier_script_sha256")),
        ("apps.audit.services", ("audit_verify_live", "audit_export_bundle")),
    ),
)
# The modeling app's side, as the admin expects it (docs/web-admin.md, "Contracts"):
#   services.training_run_start(*, tenant_id, epsilon, actor) -> run          (DomainError when refused)
#   selectors.privacy_budget(*, tenant_id) -> {epsilon_total, epsilon_spent, delta, ledger: [{epsilon, created_at, run_id}]}
#   selectors.training_runs_for_tenant(*, tenant_id, limit) -> [run], newest first
#   selectors.training_run_get(*, tenant_id, run_id) -> run                   (NotFound when not this tenant's)
#   run: {id, status, epsilon, progress (0..1), stage (optional text), created_at, finished_at, metrics,
#         model_version, error}
MODELING = Contract(
    "Privacy budget, training runs and evaluation (modeling app)",
    (
        ("apps.modeling.services", ("training_run_start",)),
        ("apps.modeling.selectors", ("privacy_budget", "training_runs_for_tenant", "training_run_get")),
    ),
)
DASHBOARD_PANELS = (SLO, MODELING, CATALOG)
