"""Sotto's own settings (the ``SOTTO`` dict of config/settings/base.py) as one typed, frozen object.

``sotto()`` builds :class:`SottoSettings` from ``settings.SOTTO`` on first use and keeps it until
Django's ``setting_changed`` signal says ``SOTTO`` changed (``override_settings``, pytest-django's
``settings`` fixture). Building refuses unknown keys, missing keys and values of the wrong type, naming
the key. The environment is read in the settings modules, not here.

Change the settings by assigning a new dict (``settings.SOTTO = {**settings.SOTTO, "KEY": value}``);
mutating ``settings.SOTTO`` in place fires no signal, so an object built before is not rebuilt.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_type_hints

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed


@dataclass(frozen=True)
class SloObjectiveDefault:
    """The objective a tenant starts with for one endpoint class (``SOTTO["SLO_DEFAULTS"]``)."""

    latency_threshold_ms: float
    latency_target: float
    availability_target: float


@dataclass(frozen=True)
class SottoSettings:
    """One field per key of ``SOTTO``: the key in lower case (``API_KEY_CACHE_TTL_S`` is ``api_key_cache_ttl_s``).

    What each knob does is said next to it in config/settings/base.py."""

    queue_prefix: str
    api_key_cache_ttl_s: float
    api_key_last_used_every_s: float
    master_key: str | None
    previous_master_keys: tuple[str, ...]
    key_dir: Path
    key_cache_ttl_s: float
    event_retention_days: int
    audit_signing_key: str | None
    audit_previous_public_keys: str | None
    audit_checkpoint_dir: Path
    audit_checkpoint_sink: str
    encoder_model_path: str | None
    # Not narrowed to fp32/int8 here: the catalog.E002 system check reports any other value.
    encoder_precision: str
    catalog_encode_batch: int
    catalog_hnsw_ef_search: int
    serving_search_user_weight: float
    serving_encoder_threads: int
    serving_query_cache_size: int
    serving_hnsw_ef_search: int
    default_epsilon_total: float
    default_delta: float
    max_epsilon_total: float
    min_renewal_days: int
    modeling_pointer_ttl_s: float
    modeling_hnsw_ef_search: int
    modeling_heartbeat_s: float
    modeling_stale_after_s: float
    modeling_requeue_after_s: float
    modeling_min_users: int
    modeling_popularity_cap: int
    modeling_torch_threads: int
    modeling_train_processes: int
    modeling_eval_users: int
    modeling_gate_margin: float
    modeling_retrain_check_s: float
    metrics_token: str | None
    rate_limit_per_s: float
    rate_limit_burst_s: float
    rate_limit_tenant_ttl_s: float
    rate_limit_redis_url: str | None
    slo_flush_every_s: float
    slo_max_buffer_age_s: float
    slo_minute_retention_h: float
    slo_retention_days: float
    slo_alert_min_events: int
    slo_min_sample: int
    slo_ingest_small_max: int
    access_log: bool
    slo_defaults: Mapping[str, SloObjectiveDefault]
    login_max_failures: int
    login_window_s: int
    runtime_role: str

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> SottoSettings:
        """Check every key and value of ``raw`` (a ``SOTTO`` dict) and build the settings object.

        Raises :class:`ImproperlyConfigured` naming each unknown or missing key, or the first value of
        the wrong type."""
        hints = _field_types()
        expected = {field.name.upper(): field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(expected))
        missing = sorted(set(expected) - set(raw))
        if unknown or missing:
            problems = ([f"unknown key(s) {', '.join(unknown)}"] if unknown else []) + (
                [f"missing key(s) {', '.join(missing)}"] if missing else []
            )
            raise ImproperlyConfigured(
                f"SOTTO has {'; '.join(problems)}: its keys are the fields of apps.core.conf.SottoSettings, "
                "upper-cased (add a new knob to both, and to SOTTO in config/settings/base.py)"
            )
        values = {name: _COERCE[hints[name]](key, raw[key]) for key, name in expected.items()}
        return cls(**values)


@functools.cache
def _field_types() -> dict[str, Any]:
    return get_type_hints(SottoSettings)


def _wrong_type(key: str, wanted: str, value: object) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"SOTTO[{key!r}] must be {wanted}, got {type(value).__name__} {value!r}")


def _int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(key, "an integer", value)
    return value


def _float(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(key, "a number", value)
    return float(value)


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type(key, "True or False", value)
    return value


def _str(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _wrong_type(key, "a string", value)
    return value


def _optional_str(key: str, value: object) -> str | None:
    return None if value is None else _str(key, value)


def _path(key: str, value: object) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise _wrong_type(key, "a path", value)
    return Path(value)


def _str_tuple(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise _wrong_type(key, "a list of strings", value)
    return tuple(value)


def _slo_defaults(key: str, value: object) -> Mapping[str, SloObjectiveDefault]:
    fields = [field.name for field in dataclasses.fields(SloObjectiveDefault)]
    if not isinstance(value, Mapping):
        raise _wrong_type(key, "a mapping of endpoint class to objective", value)
    out: dict[str, SloObjectiveDefault] = {}
    for endpoint_class, spec in value.items():
        where = f"{key}[{endpoint_class!r}]"
        if not isinstance(spec, Mapping) or sorted(spec) != sorted(fields):
            raise _wrong_type(where, f"a mapping with exactly {', '.join(fields)}", spec)
        out[str(endpoint_class)] = SloObjectiveDefault(
            **{name: _float(f"{where}[{name!r}]", spec[name]) for name in fields}
        )
    return MappingProxyType(out)


# One checker per field type of SottoSettings (a new type needs its checker here).
_COERCE: dict[object, Callable[[str, object], Any]] = {
    int: _int,
    float: _float,
    bool: _bool,
    str: _str,
    str | None: _optional_str,
    Path: _path,
    tuple[str, ...]: _str_tuple,
    Mapping[str, SloObjectiveDefault]: _slo_defaults,
}


@functools.cache
def sotto() -> SottoSettings:
    """Sotto's settings, built from ``settings.SOTTO`` and kept until ``SOTTO`` is overridden."""
    return SottoSettings.from_mapping(settings.SOTTO)


def _forget_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "SOTTO":
        sotto.cache_clear()


setting_changed.connect(_forget_on_change, dispatch_uid="apps.core.conf.sotto")


@register("core")
def check_sotto_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """``core.E001``: ``SOTTO`` cannot be built (unknown or missing key, wrong type), said at start."""
    try:
        SottoSettings.from_mapping(settings.SOTTO)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="core.E001")]
    return []
