"""The serving side of the user tower: a user's interest vector from the live state (numpy, no torch)."""

from __future__ import annotations

from typing import Any

import numpy as np

from apps.modeling.artifacts import ServingModel
from apps.modeling.ml.features import tower_input
from apps.modeling.ml.inference import user_vectors

__all__ = ["user_interest"]


def user_interest(model: ServingModel, state: dict[str, Any] | None) -> np.ndarray:
    """Unit-norm user vector (``model.item_dim``) for a state from ``apps.profiles.selectors.user_state``.

    Numpy only (``ml.inference.user_vectors`` over ``ml.features.tower_input``). ``None`` (cold
    start) maps to the tower's zero-input output, which leans on the DP popularity coordinate.
    Raises ``ValueError`` if the state was built with another feature layout than the model's.
    """
    n_in = int(model.weights["user.skip.weight"].shape[1])
    if state is None or int(state.get("n_events", 0)) == 0:
        z = np.zeros(n_in, dtype=np.float32)
    else:
        z = tower_input(state, model.feature_config)
        if z.shape[0] != n_in:
            raise ValueError(
                f"user state gives a {z.shape[0]}-d tower input, model v{model.version} expects {n_in}: "
                "states must be rebuilt with the model's feature configuration"
            )
    vec: np.ndarray = user_vectors(model.weights, z)[0]
    return vec
