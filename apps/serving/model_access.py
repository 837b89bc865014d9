"""The one place serving reads the modeling app: the active model, its served k-NN, DP popularity.

The contract (``apps.modeling.selectors`` / ``apps.modeling.interest``):

- ``serving_model(tenant_id) -> ServingModel | None``: the tenant's live model version (version,
  numpy weights, feature config, item dim, checksum), cached per process;
- ``served_knn(*, tenant_id, version, vector, k, exclude_pks, category, available_only)``:
  cosine top-k over the item vectors materialised for exactly that version, as
  ``[(item_pk, external_id, score)]``;
- ``popular_items(*, tenant_id, k, exclude_pks, category)``: from the latest DP popularity release,
  ``[]`` when there is none;
- ``user_interest(model, state) -> np.ndarray``: the user tower in numpy (no torch).

Before a tenant's first trained model, serving uses the ``content``, ``popular`` and ``newest``
strategies only: :func:`active_model` answers None, :func:`popular` ``[]`` until the first DP
popularity release, and cold start falls back to the catalogue's newest items (``apps.serving.newest``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from apps.core.hnsw import Neighbour
from apps.modeling import selectors as modeling_selectors
from apps.modeling.artifacts import ServingModel
from apps.modeling.interest import user_interest


def active_model(tenant_id: int) -> ServingModel | None:
    """The tenant's live model version, or None before the first one."""
    return modeling_selectors.serving_model(tenant_id)


def model_version(model: ServingModel) -> int:
    return model.version


def interest(model: ServingModel, state: dict[str, Any]) -> np.ndarray:
    """The model's user vector for this state (read with the model's own feature config)."""
    return user_interest(model, state)


def personal_knn(
    *,
    tenant_id: int,
    model: ServingModel,
    vector: np.ndarray,
    k: int,
    exclude_pks: Iterable[int],
    category: str | None,
) -> list[Neighbour]:
    """Top-k over the item vectors of exactly ``model``'s version (never another version's)."""
    return modeling_selectors.served_knn(
        tenant_id=tenant_id,
        version=model.version,
        vector=vector,
        k=k,
        exclude_pks=tuple(exclude_pks),
        category=category,
        available_only=True,
    )


def popular(*, tenant_id: int, k: int, exclude_pks: Iterable[int], category: str | None) -> list[Neighbour]:
    """The latest DP popularity release's top items passing the filters; [] when there is no release."""
    return modeling_selectors.popular_items(
        tenant_id=tenant_id, k=k, exclude_pks=tuple(exclude_pks), category=category
    )
