"""Search queries → content-space vectors, in the web process, with the encoder the items went through.

- The encoder is the catalogue's (``apps.catalog.encoder``): same model folder as the tenant's
  items (``Tenant.settings["encoder_model_path"]`` or the platform default) and the platform
  ``ENCODER_PRECISION`` (``int8`` resolves to ONNX int8 when enabled), so a query vector is
  comparable with the stored item vectors.
- Loaded lazily on the first search of the process (never at import: the web process that only
  recommends never loads it), with ``SERVING_ENCODER_THREADS`` intra-op threads (1 by default:
  gunicorn's threads and processes already use the cores) and an LRU of
  ``SERVING_QUERY_CACHE_SIZE`` query vectors shared by every thread of the process.
- The tenant's model choice is re-read at most every ``_TTL_S`` seconds per tenant, so the hot path
  does no database read and no file check for it.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np

from apps.catalog.encoder import TextEncoder, get_encoder
from apps.core.conf import sotto

_TTL_S = 60.0
_lock = threading.Lock()
_by_tenant: dict[int, tuple[float, TextEncoder]] = {}

# Ideographs, kana and hangul: the English WordPiece vocabulary maps most of them to [UNK].
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _encoder(tenant_id: int) -> TextEncoder:
    now = time.monotonic()
    with _lock:
        hit = _by_tenant.get(tenant_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    from apps.catalog.encoding import check_model_path, model_path_for
    from apps.tenancy.models import Tenant

    tenant_settings = Tenant.objects.filter(pk=tenant_id).values_list("settings", flat=True).first()
    path = model_path_for(tenant_settings)
    check_model_path(path)
    encoder = get_encoder(
        path,
        sotto().encoder_precision,
        num_threads=sotto().serving_encoder_threads,
        query_cache_size=sotto().serving_query_cache_size,
    )
    with _lock:
        _by_tenant[tenant_id] = (now + _TTL_S, encoder)
    return encoder


def query_vector(tenant_id: int, text: str) -> np.ndarray:
    """The L2-normalised 384-d vector of a search query (read-only; cached per process)."""
    return _encoder(tenant_id).encode_query(text)


def mostly_cjk(text: str) -> bool:
    """True when most non-space characters are CJK: the English encoder then says little (see docs/api.md).

    >>> mostly_cjk("玩具总动员"), mostly_cjk("Toy Story 玩具总动员"), mostly_cjk("toy story")
    (True, False, False)
    """
    chars = [c for c in text if not c.isspace()]
    return bool(chars) and sum(1 for c in chars if _CJK.match(c)) * 2 > len(chars)


def forget_encoders() -> None:
    """Drop the per-tenant encoder choices (tests; a tenant's model path changed)."""
    with _lock:
        _by_tenant.clear()
