"""A newly active model with another feature layout reaches profiles through ``apps.core.hooks``."""

from __future__ import annotations

from typing import Any

from apps.core import hooks


def test_profiles_registers_its_state_rebuild_for_a_feature_layout_change():
    from apps.profiles.hooks import _rebuild_states

    assert _rebuild_states in hooks._layout_changed


def test_the_modeling_rebuild_fires_the_hook_and_returns_what_the_handlers_rebuilt(monkeypatch: Any):
    from apps.modeling import training

    calls: list[int] = []

    def handler(tenant_id: int) -> int:
        calls.append(tenant_id)
        return 7

    monkeypatch.setattr(hooks, "_layout_changed", [handler, handler])
    assert training.rebuild_user_states(42) == 14
    assert calls == [42, 42]


def test_the_deployed_feature_configuration_is_the_one_profiles_reexports():
    from apps.modeling.ml.features import feature_config
    from apps.profiles import selectors

    assert selectors.feature_config is feature_config
