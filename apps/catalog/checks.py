"""System checks: the encoder settings are validated at start, with a clear error, not at first encode.

- ``catalog.E001``: ``SOTTO["ENCODER_MODEL_PATH"]`` (or the packaged default) is not a usable
  384-d model folder;
- ``catalog.E002``: ``SOTTO["ENCODER_PRECISION"]`` is not ``fp32`` or ``int8``;
- ``catalog.E003`` (database-tagged, so only with ``check --database default``): a tenant's
  ``settings["encoder_model_path"]`` override is unusable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register

from apps.catalog.encoder import EncoderConfigError

PRECISIONS = ("fp32", "int8")


@register("catalog")
def check_encoder_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    from apps.catalog.encoding import check_model_path, platform_model_path
    from apps.core.conf import sotto

    errors: list[CheckMessage] = []
    path = platform_model_path()
    try:
        check_model_path(path)
    except EncoderConfigError as exc:
        errors.append(
            Error(
                str(exc),
                hint="Set SOTTO_ENCODER_MODEL_PATH to a sentence-transformers folder with config.json, a tokenizer "
                "and weights (384-d, e.g. all-MiniLM-L6-v2), or unset it to use the packaged model.",
                id="catalog.E001",
            )
        )
    precision = sotto().encoder_precision
    if precision not in PRECISIONS:
        errors.append(
            Error(f"SOTTO['ENCODER_PRECISION'] is {precision!r}", hint="use fp32 or int8", id="catalog.E002")
        )
    return errors


@register(Tags.database)
def check_tenant_encoder_overrides(
    app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if not databases or "default" not in databases:
        return []
    from django.db import DatabaseError

    from apps.catalog.encoding import TENANT_MODEL_KEY, check_model_path
    from apps.tenancy.models import Tenant

    try:
        overrides = [
            (slug, value.get(TENANT_MODEL_KEY))
            for slug, value in Tenant.objects.values_list("slug", "settings")
            if isinstance(value, dict) and value.get(TENANT_MODEL_KEY)
        ]
    except DatabaseError:  # not migrated yet: nothing to check
        return []
    errors: list[CheckMessage] = []
    for slug, path in overrides:
        try:
            check_model_path(str(path))
        except EncoderConfigError as exc:
            errors.append(
                Error(
                    f"tenant {slug}: {exc}",
                    hint=f"fix or remove settings[{TENANT_MODEL_KEY!r}]",
                    id="catalog.E003",
                )
            )
    return errors
