"""An in-memory stand-in that keeps the modeling contract of ``apps/webadmin/contracts.py`` exactly,
for the admin's tests while the modeling app's Django side is not in the tree."""

from __future__ import annotations

import importlib.machinery
import types
from datetime import UTC, datetime
from typing import Any

from apps.core.errors import DomainError, NotFound


class FakeModeling:
    """Budget ε 4 per tenant; runs stay queued until the test moves them."""

    def __init__(self) -> None:
        self.runs: dict[int, dict[str, Any]] = {}
        self.started: list[tuple[int, float, str]] = []

    def training_run_start(self, *, tenant_id: int, epsilon: float, actor: str) -> dict[str, Any]:
        spent = sum(r["epsilon"] for r in self.runs.values() if r["tenant_id"] == tenant_id)
        if spent + epsilon > 4.0:
            raise DomainError(f"refused: ε {epsilon} would exceed the remaining budget ε {4.0 - spent:g}", status=409)
        run_id = len(self.runs) + 1
        self.runs[run_id] = {
            "id": run_id, "tenant_id": tenant_id, "status": "queued", "epsilon": epsilon, "progress": 0.0,
            "created_at": datetime(2026, 1, 1, 12, run_id, tzinfo=UTC), "finished_at": None, "metrics": {},
            "model_version": "", "error": "",
        }
        self.started.append((tenant_id, epsilon, actor))
        return self.runs[run_id]

    def privacy_budget(self, *, tenant_id: int) -> dict[str, Any]:
        mine = [r for r in self.runs.values() if r["tenant_id"] == tenant_id]
        return {
            "epsilon_total": 4.0, "epsilon_spent": sum(r["epsilon"] for r in mine), "delta": 1e-6,
            "ledger": [{"epsilon": r["epsilon"], "created_at": r["created_at"], "run_id": r["id"]} for r in mine],
        }

    def training_runs_for_tenant(self, *, tenant_id: int, limit: int) -> list[dict[str, Any]]:
        return sorted((r for r in self.runs.values() if r["tenant_id"] == tenant_id), key=lambda r: -r["id"])[:limit]

    def training_run_get(self, *, tenant_id: int, run_id: int) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is None or run["tenant_id"] != tenant_id:
            raise NotFound("no such training run")
        return run


def fake_module(name: str, **functions: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    for key, value in functions.items():
        setattr(module, key, value)
    return module
