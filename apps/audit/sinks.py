"""Where signed checkpoints go besides the database: an external, append-only-ish sink.

A copy outside the database is what makes the checkpoints worth having: someone able to rewrite
the audit tables (a superuser, a restored backup) cannot also remove or re-sign what the sink
holds. The default sink is a directory (``SOTTO["AUDIT_CHECKPOINT_DIR"]``), one JSON file per
checkpoint, never overwritten; point it at storage the database host cannot write (a separate
volume, an object-lock bucket mounted read-append) and back it up separately. Another sink is
any class named by ``SOTTO["AUDIT_CHECKPOINT_SINK"]`` with the same ``write``/``read`` methods.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, Protocol

from django.utils.module_loading import import_string

from apps.core.conf import sotto

_CHAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


class SinkError(Exception):
    """The sink could not store or return checkpoints."""


class CheckpointSink(Protocol):
    def write(self, checkpoint: dict[str, Any]) -> None:
        """Store ``checkpoint``; idempotent for an identical checkpoint, never overwrites another."""

    def read(self, tenant: str | None) -> list[dict[str, Any]]:
        """Every checkpoint stored for the chain (``None``: the platform chain)."""


def checkpoint_file_name(checkpoint: dict[str, Any]) -> str:
    """``<sequence>-<signed_at>-<kind>-<sig>.json``: sorts by sequence, unique per signature."""
    stamp = str(checkpoint["signed_at"]).replace("-", "").replace(":", "").replace(".", "")
    sig = re.sub(r"[^A-Za-z0-9]", "", str(checkpoint["signature"]))[:12]
    return f"{int(checkpoint['sequence']):015d}-{stamp}-{checkpoint['kind']}-{sig}.json"


def _encode(checkpoint: dict[str, Any]) -> bytes:
    return (json.dumps(checkpoint, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


class DirectorySink:
    """``<root>/platform/`` and ``<root>/tenant/<slug>/``, one file per checkpoint, written once."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        configured = root if root is not None else sotto().audit_checkpoint_dir
        if not configured or str(configured) in {"", "."}:
            raise SinkError(
                "SOTTO_AUDIT_CHECKPOINT_DIR is empty: the audit checkpoint sink needs a directory"
            )
        self.root = Path(configured)

    def chain_dir(self, tenant: str | None) -> Path:
        if tenant is None:
            return self.root / "platform"
        if _CHAIN_NAME.fullmatch(tenant) is None:
            raise SinkError(f"tenant slug {tenant!r} cannot name a sink directory")
        return self.root / "tenant" / tenant

    def write(self, checkpoint: dict[str, Any]) -> None:
        directory = self.chain_dir(checkpoint["tenant"])
        data = _encode(checkpoint)
        final = directory / checkpoint_file_name(checkpoint)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            if final.exists():
                self._same_or_fail(final, data)
                return
            # Write aside, then link into place: the final name appears complete or not at all,
            # and link() refuses to replace an existing file (never overwrite a checkpoint).
            tmp = directory / f".tmp-{uuid.uuid4().hex}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    self._same_or_fail(final, data)
            finally:
                tmp.unlink(missing_ok=True)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise SinkError(f"cannot write checkpoint to {final}: {exc.strerror or exc}") from exc

    @staticmethod
    def _same_or_fail(path: Path, data: bytes) -> None:
        if path.read_bytes() != data:
            raise SinkError(f"{path} already holds a different checkpoint; refusing to overwrite it")

    def read(self, tenant: str | None) -> list[dict[str, Any]]:
        directory = self.chain_dir(tenant)
        if not directory.is_dir():
            return []
        out: list[dict[str, Any]] = []
        for path in sorted(directory.glob("*.json")):
            try:
                value = json.loads(path.read_bytes().decode("utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise SinkError(
                    f"checkpoint file {path.name} is unreadable ({exc.__class__.__name__})"
                ) from exc
            if not isinstance(value, dict):
                raise SinkError(f"checkpoint file {path.name} is not a JSON object")
            out.append(value)
        return out


def checkpoint_sink() -> CheckpointSink:
    """The configured sink (``SOTTO["AUDIT_CHECKPOINT_SINK"]``, a :class:`DirectorySink` by default)."""
    cls = import_string(sotto().audit_checkpoint_sink)
    sink: CheckpointSink = cls()
    return sink
