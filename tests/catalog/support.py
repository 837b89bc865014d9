"""Helpers for catalogue tests: post items through the API, wait for the real worker to encode them."""

from __future__ import annotations

from typing import Any

from tests.support import TenantPersona, wait_for


def item(external_id: str, title: str, **fields: Any) -> dict[str, Any]:
    return {"id": external_id, "title": title, **fields}


def post_items(api: Any, persona: TenantPersona, items: list[dict[str, Any]]) -> Any:
    return api.post("/api/v1/items", {"items": items}, format="json", **persona.auth)


def catalog_status(api: Any, persona: TenantPersona) -> dict[str, int]:
    response = api.get("/api/v1/catalog/status", **persona.auth)
    assert response.status_code == 200, response.content
    counts: dict[str, int] = response.json()
    return counts


def wait_encoded(
    api: Any, persona: TenantPersona, expected_ready: int, worker: Any, timeout: float = 180
) -> dict[str, int]:
    """Poll the status endpoint until ``expected_ready`` items are ready and none pending."""

    def done() -> dict[str, int] | None:
        counts = catalog_status(api, persona)
        return counts if counts["pending"] == 0 and counts["ready"] >= expected_ready else None

    counts: dict[str, int] = wait_for(
        done,
        timeout=timeout,
        interval=0.5,
        message=f"items not encoded in time; worker log:\n{worker.log_path.read_text()[-3000:]}",
    )
    return counts
