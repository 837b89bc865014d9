"""A model version as stored (npz in ``bytea`` + SHA-256) and as a process keeps it in memory.

Blob layout (``numpy.savez``, no pickle): ``w:<name>`` for every user/item-tower weight exported by
``ml.train.export_weights``, ``item_pks`` (int64, the training item universe in training order =
ascending catalogue pk), ``extras`` (float32, one row per item: the DP popularity coordinate, or
for the "factors" DP design ``[popularity, √M·V_i (rank), pad]``) and optionally ``cold_extras``
(the extras row of an item outside the universe; zeros when absent).
The checksum is verified every time a blob is loaded; a mismatch raises ``ArtifactCorrupt``.

Numpy only: the web process loads versions through here and never imports torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from django.db import connection

from apps.modeling.ml.features import FeatureConfig

CACHE_SIZE = 64


class ArtifactCorrupt(RuntimeError):
    """Stored weights do not match their checksum (or cannot be read)."""


@dataclass(frozen=True)
class ServingModel:
    """What serving needs of the active version: numpy user-tower weights and how to read states."""

    version: int
    weights: dict[str, np.ndarray]
    feature_config: FeatureConfig
    item_dim: int
    checksum: str


@dataclass(frozen=True)
class VersionArtifacts:
    model: ServingModel
    item_pks: np.ndarray
    extras: np.ndarray
    cold_extras: np.ndarray | None = None  # extras row of an item outside the universe (None: zeros)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return self.model.weights

    def extras_for(self, item_pks: Sequence[int]) -> np.ndarray:
        """Extras rows for these items; items outside the training universe get ``cold_extras``
        (zeros, or for the factor layout [0 (no released count), 0 (no factors), pad] so that their
        item vector has the same norm as every other one)."""
        pks = np.asarray(item_pks, dtype=np.int64)
        out = np.zeros((len(pks), self.extras.shape[1]), dtype=np.float32)
        if self.cold_extras is not None:
            out[:] = self.cold_extras
        if len(self.item_pks) == 0:
            return out
        pos = np.searchsorted(self.item_pks, pks)
        pos_c = np.minimum(pos, len(self.item_pks) - 1)
        hit = self.item_pks[pos_c] == pks
        out[hit] = self.extras[pos_c[hit]]
        return out


def pack(
    weights: dict[str, np.ndarray],
    item_pks: np.ndarray,
    extras: np.ndarray,
    cold_extras: np.ndarray | None = None,
) -> tuple[bytes, str]:
    """(blob, sha256 hex) of a version's arrays (``cold_extras``: optional row for unknown items)."""
    buf = io.BytesIO()
    arrays = {f"w:{name}": np.ascontiguousarray(value) for name, value in weights.items()}
    arrays["item_pks"] = np.asarray(item_pks, dtype=np.int64)
    arrays["extras"] = np.asarray(extras, dtype=np.float32)
    if cold_extras is not None:
        arrays["cold_extras"] = np.asarray(cold_extras, dtype=np.float32).reshape(-1)
    np.savez(buf, allow_pickle=False, **arrays)  # type: ignore[arg-type]
    blob = buf.getvalue()
    return blob, hashlib.sha256(blob).hexdigest()


def unpack(
    blob: bytes, checksum: str
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray | None]:
    if hashlib.sha256(blob).hexdigest() != checksum:
        raise ArtifactCorrupt("model weights do not match their SHA-256 checksum")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            weights = {key[2:]: npz[key] for key in npz.files if key.startswith("w:")}
            cold = npz["cold_extras"] if "cold_extras" in npz.files else None
            return weights, npz["item_pks"], npz["extras"], cold
    except (ValueError, KeyError, OSError) as exc:
        raise ArtifactCorrupt(f"model weights unreadable: {exc}") from exc


def feature_config_to_json(cfg: FeatureConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in asdict(cfg).items():
        if isinstance(value, tuple):
            out[key] = [None if isinstance(v, float) and math.isinf(v) else v for v in value]
        else:
            out[key] = value
    return out


def feature_config_from_json(data: dict[str, Any]) -> FeatureConfig:
    values: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, list):
            values[key] = tuple(math.inf if v is None else float(v) for v in value)
        else:
            values[key] = value
    return FeatureConfig(**values)


_lock = threading.Lock()
_cache: OrderedDict[tuple[int, int], VersionArtifacts] = OrderedDict()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def load_artifacts(tenant_id: int, version: int) -> VersionArtifacts:
    """The version's arrays, from the process cache or one query (caller's tenant-scoped transaction)."""
    key = (int(tenant_id), int(version))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT blob, checksum, feature_config, item_dim FROM modeling_modelversion "
            "WHERE tenant_id = %s AND version = %s",
            [int(tenant_id), int(version)],
        )
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"tenant {tenant_id} has no model version {version}")
    blob, checksum, cfg, item_dim = row
    weights, item_pks, extras, cold = unpack(bytes(blob), str(checksum))
    cfg_json = cfg if isinstance(cfg, dict) else json.loads(cfg)
    art = VersionArtifacts(
        model=ServingModel(
            version=int(version),
            weights=weights,
            feature_config=feature_config_from_json(cfg_json),
            item_dim=int(item_dim),
            checksum=str(checksum),
        ),
        item_pks=item_pks,
        extras=extras,
        cold_extras=cold,
    )
    with _lock:
        _cache[key] = art
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return art


def live_versions(tenant_id: int) -> list[int]:
    """Versions whose served vectors exist or are being written (active, previous, ready, materialising)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT version FROM modeling_modelversion WHERE tenant_id = %s "
            "AND status IN ('materialising', 'ready', 'active', 'previous') ORDER BY version",
            [int(tenant_id)],
        )
        return [int(row[0]) for row in cursor.fetchall()]
