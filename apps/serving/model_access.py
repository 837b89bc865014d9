"""The one place serving reads the modeling app: the active model, its served k-NN, DP popularity.

The contract (``apps.modeling.selectors`` / ``apps.modeling.services``):

- ``serving_model(tenant_id) -> ServingModel | None``: the tenant's live model version (version,
  numpy weights, feature config, item dim, checksum), cached per process;
- ``served_knn(*, tenant_id, version, vector, k, exclude_pks, category, available_only)``:
  cosine top-k over the item vectors materialised for exactly that version, as
  ``[(item_pk, external_id, score)]``;
- ``popular_items(*, tenant_id, k, exclude_pks, category)``: from the latest DP popularity release,
  ``[]`` when there is none;
- ``user_interest(model, state) -> np.ndarray``: the user tower in numpy (no torch).

A deployment without the modeling app (or before its first trained model) serves the ``content``,
``popular`` and ``newest`` strategies only: every function here then answers "nothing", and cold
start falls back to the catalogue's newest items (``apps.serving.newest``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import numpy as np

from apps.core.hnsw import Neighbour
from apps.core.modules import module_exists

_modules: dict[str, ModuleType | None] = {}


def _module(name: str) -> ModuleType | None:
    if name not in _modules:
        _modules[name] = importlib.import_module(name) if module_exists(name) else None
    return _modules[name]


def active_model(tenant_id: int) -> Any | None:
    """The tenant's live model version (an opaque ``ServingModel``), or None before the first one."""
    selectors = _module("apps.modeling.selectors")
    if selectors is None or not hasattr(selectors, "serving_model"):
        return None
    return selectors.serving_model(tenant_id)


def model_version(model: Any) -> int:
    return int(model.version)


def interest(model: Any, state: dict[str, Any]) -> np.ndarray:
    """The model's user vector for this state (read with the model's own feature config)."""
    services = _module("apps.modeling.services")
    assert services is not None, "a model is active, so the modeling app is installed"
    vector: np.ndarray = services.user_interest(model, state)
    return vector


def personal_knn(
    *, tenant_id: int, model: Any, vector: np.ndarray, k: int, exclude_pks: Iterable[int], category: str | None
) -> list[Neighbour]:
    """Top-k over the item vectors of exactly ``model``'s version (never another version's)."""
    selectors = _module("apps.modeling.selectors")
    assert selectors is not None
    found: list[Neighbour] = selectors.served_knn(
        tenant_id=tenant_id, version=model.version, vector=vector, k=k, exclude_pks=tuple(exclude_pks),
        category=category, available_only=True,
    )
    return found


def popular(*, tenant_id: int, k: int, exclude_pks: Iterable[int], category: str | None) -> list[Neighbour]:
    """The latest DP popularity release's top items passing the filters; [] when there is no release."""
    selectors = _module("apps.modeling.selectors")
    if selectors is None or not hasattr(selectors, "popular_items"):
        return []
    found: list[Neighbour] = selectors.popular_items(
        tenant_id=tenant_id, k=k, exclude_pks=tuple(exclude_pks), category=category
    )
    return found
