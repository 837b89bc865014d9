"""The typed settings object: built from settings.SOTTO, refused clearly when wrong, rebuilt on override."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.core.conf import SloObjectiveDefault, SottoSettings, sotto


def _sotto(**changes: Any) -> dict[str, Any]:
    return {**django_settings.SOTTO, **changes}


def test_every_key_of_the_sotto_dict_is_a_typed_field() -> None:
    built = SottoSettings.from_mapping(django_settings.SOTTO)
    assert built.queue_prefix == django_settings.SOTTO["QUEUE_PREFIX"]
    assert isinstance(built.key_dir, Path)
    assert isinstance(built.previous_master_keys, tuple)
    assert built.slo_defaults["recommend"] == SloObjectiveDefault(
        latency_threshold_ms=50.0, latency_target=0.99, availability_target=0.999
    )


def test_it_refuses_an_unknown_key_and_names_it() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"unknown key.*SERVING_HNSW_EF_SEACH"):
        SottoSettings.from_mapping(_sotto(SERVING_HNSW_EF_SEACH=100))


def test_it_refuses_a_missing_key_and_names_it() -> None:
    raw = _sotto()
    del raw["LOGIN_WINDOW_S"]
    with pytest.raises(ImproperlyConfigured, match=r"missing key.*LOGIN_WINDOW_S"):
        SottoSettings.from_mapping(raw)


@pytest.mark.parametrize(
    ("key", "value", "wanted"),
    [
        ("RATE_LIMIT_PER_S", "200", "a number"),
        ("MODELING_MIN_USERS", 10.5, "an integer"),
        ("MODELING_MIN_USERS", True, "an integer"),
        ("ACCESS_LOG", "true", "True or False"),
        ("MASTER_KEY", 123, "a string"),
        ("KEY_DIR", 7, "a path"),
        ("PREVIOUS_MASTER_KEYS", "a,b", "a list of strings"),
    ],
)
def test_it_refuses_a_value_of_the_wrong_type_and_names_the_key(key: str, value: Any, wanted: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=rf"SOTTO\['{key}'\] must be {wanted}, got"):
        SottoSettings.from_mapping(_sotto(**{key: value}))


def test_it_refuses_an_slo_default_without_one_of_its_targets() -> None:
    broken = {**django_settings.SOTTO["SLO_DEFAULTS"], "search": {"latency_threshold_ms": 100.0}}
    with pytest.raises(ImproperlyConfigured, match=r"SLO_DEFAULTS\['search'\]"):
        SottoSettings.from_mapping(_sotto(SLO_DEFAULTS=broken))


def test_an_integer_is_taken_where_a_number_is_wanted() -> None:
    assert SottoSettings.from_mapping(_sotto(RATE_LIMIT_PER_S=0)).rate_limit_per_s == 0.0


def test_the_object_is_frozen() -> None:
    with pytest.raises(AttributeError):
        sotto().queue_prefix = "x"  # type: ignore[misc]


def test_override_settings_is_seen_and_undone() -> None:
    before = sotto()
    assert sotto() is before  # kept between calls
    with override_settings(SOTTO=_sotto(LOGIN_MAX_FAILURES=before.login_max_failures + 1)):
        assert sotto().login_max_failures == before.login_max_failures + 1
    assert sotto().login_max_failures == before.login_max_failures


def test_the_settings_fixture_is_seen(settings: Any) -> None:
    settings.SOTTO = {**settings.SOTTO, "SLO_MIN_SAMPLE": 7}
    assert sotto().slo_min_sample == 7


def test_the_system_check_reports_a_wrong_sotto_at_start() -> None:
    from apps.core.conf import check_sotto_settings

    assert check_sotto_settings() == []
    with override_settings(SOTTO=_sotto(ACCESS_LOG="yes")):
        [error] = check_sotto_settings()
    assert error.id == "core.E001" and "ACCESS_LOG" in error.msg
