"""Vectors on the wire through pgvector's own psycopg adapters (``pgvector.psycopg``), one cursor at a time.

- A numpy array parameter is dumped by pgvector's dumpers: as text (``[x1,x2,...]``, every float32
  exact) by Django's client-side-binding cursors, as pgvector's binary form (int16 dim, int16
  unused, big-endian float4s) by a server-side-binding cursor; a ``vector`` column loads as a numpy
  float32 array, from text or binary. So no code formats or parses vector text by hand.
- The adapters go on the cursor, never on the connection: a numpy parameter of any other query on
  the same pooled connection keeps its meaning.
- The ``vector`` type's OID differs between databases: it is read once per connection
  (``TypeInfo.fetch``, one round trip the first time a connection meets a vector) and kept in that
  connection's type registry.

``apps.core`` because the one shared k-NN query (``apps.core.hnsw``) uses it, as do the catalogue's
content vectors and modeling's served vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg.vector import VectorBinaryDumper, VectorBinaryLoader, VectorDumper, VectorLoader
from psycopg.abc import Buffer
from psycopg.types import TypeInfo

__all__ = ["adapt_vectors", "vector_oid"]


class NumpyVectorLoader(VectorLoader):
    """pgvector's text loader, answering a numpy float32 array instead of a ``pgvector.Vector``."""

    def load(self, data: Buffer) -> Any:
        vector = super().load(data)
        return None if vector is None else vector.to_numpy()


class NumpyVectorBinaryLoader(VectorBinaryLoader):
    """pgvector's binary loader, answering a numpy float32 array."""

    def load(self, data: Buffer) -> Any:
        vector = super().load(data)
        return None if vector is None else vector.to_numpy()


_dumpers: dict[int, tuple[type[VectorDumper], type[VectorBinaryDumper]]] = {}


def _dumper_classes(oid: int) -> tuple[type[VectorDumper], type[VectorBinaryDumper]]:
    """pgvector's dumpers bound to this database's ``vector`` OID (made once per OID, as pgvector's
    ``register_vector_info`` makes them per connection)."""
    classes = _dumpers.get(oid)
    if classes is None:
        text = type("VectorTextDumper", (VectorDumper,), {"oid": oid})
        binary = type("VectorBinaryDumper", (VectorBinaryDumper,), {"oid": oid})
        classes = _dumpers[oid] = (text, binary)
    return classes


def vector_oid(conn: psycopg.Connection[Any]) -> int:
    """The ``vector`` type's OID on this connection's database (fetched once per connection)."""
    info = conn.adapters.types.get("vector")
    if info is None:
        info = TypeInfo.fetch(conn, "vector")
        if info is None:
            raise psycopg.ProgrammingError(
                "the vector type is not installed in this database (CREATE EXTENSION vector)"
            )
        info.register(conn)  # the name and OID only: no dumper or loader on the connection
    return int(info.oid)


def adapt_vectors(cursor: Any) -> Any:
    """Register pgvector's dumpers (numpy arrays) and loaders (``vector`` results) on this cursor.

    ``cursor`` is a Django cursor (its psycopg cursor is adapted) or a psycopg cursor; returns it.
    """
    raw: psycopg.Cursor[Any] = getattr(cursor, "cursor", cursor)
    oid = vector_oid(raw.connection)
    text, binary = _dumper_classes(oid)
    adapters = raw.adapters
    adapters.register_dumper(np.ndarray, text)
    adapters.register_dumper(np.ndarray, binary)
    adapters.register_loader(oid, NumpyVectorLoader)
    adapters.register_loader(oid, NumpyVectorBinaryLoader)
    return cursor
