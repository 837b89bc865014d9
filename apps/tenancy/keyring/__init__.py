"""Envelope keys: master key → per-tenant keys → per-user keys, all AES-256-GCM.

What a caller may rely on:

- The **master key** comes from ``SOTTO_MASTER_KEY`` or ``SOTTO_MASTER_KEY_FILE`` (32 bytes,
  base64 or hex). Without either, the embedded default keeps one in ``<KEY_DIR>/master.key``
  (created once with mode 0600; a line on stderr says so). It never enters the database: each
  tenant key row records only the master key's id (a keyed fingerprint), so a wrong master key
  fails with a clear message instead of garbage.
- Each tenant has two independent key families (``TenantKey.purpose``):
  ``pseudonym`` (one version, never rotated: it is the HMAC key behind every stored pseudonym,
  see ``apps.tenancy.pseudonyms``) and ``enc`` (versioned; wraps per-user keys).
  A tenant key is wrapped under the master key with associated data binding tenant, purpose
  and version, so a wrapped key copied to another row does not open.
- **Per-user keys** are random 256-bit keys created by the owning app (``apps.profiles``) and
  stored there wrapped under the tenant's active ``enc`` version, with associated data binding
  tenant, version and the user's pseudonym (the *subject*). Destroying that wrapped blob
  destroys the user's data (crypto-shredding).
- **Rotation** (``tenant_key_rotate``): a new ``enc`` version becomes active and the previous one
  ``retiring`` (still able to unwrap); a Celery task re-wraps every user key under the new
  version in batches (``rewrap_batch``), then retires the drained version: its wrapped material is
  erased from the database. Reads never fail meanwhile: a reader that lost the race with
  retirement gets :class:`KeyVersionRetired` and re-reads its (by then re-wrapped) row.
- New user keys are wrapped under the active version read ``FOR SHARE``, so a rotation that is
  flipping versions waits for them, and retirement (which locks the version row) can never miss
  a key wrapped under it.

Apps that hold wrapped user keys register a :class:`WrappedKeyStore` (``apps.profiles`` does so
in its ``AppConfig.ready``, which also imports this module so the ``on_tenant_created`` hook that
creates a tenant's keys is registered). Tenants created before the keyring existed get their
keys lazily on first use.

All functions that touch the database expect to run inside a transaction scoped to the tenant
(``tenant_context`` or a ``TenantAPIView`` request); row-level security binds them.
"""

from apps.tenancy.keyring.master import (
    forget_cached_keys,
    master_key,
    master_key_id,
    parse_master_key,
    previous_master_keys,
)
from apps.tenancy.keyring.primitives import (
    ENC,
    KEY_BYTES,
    NONCE_BYTES,
    PSEUDONYM,
    TAG_BYTES,
    DecryptionFailed,
    KeyringError,
    KeyVersionRetired,
    aead_open,
    aead_seal,
)
from apps.tenancy.keyring.rotation import (
    KeyVersionInfo,
    RewrapProgress,
    WrappedKeyStore,
    WrappedRow,
    register_wrapped_key_store,
    retire_drained_versions,
    rewrap_batch,
    rotation_complete,
    tenant_key_rotate,
    tenant_key_versions,
)
from apps.tenancy.keyring.tenant_keys import pseudonym_key, tenant_keys_create, tenant_keys_rewrap
from apps.tenancy.keyring.user_keys import WrappedKey, user_key_new, user_key_unwrap, user_key_wrap

__all__ = [
    "ENC",
    "KEY_BYTES",
    "NONCE_BYTES",
    "PSEUDONYM",
    "TAG_BYTES",
    "DecryptionFailed",
    "KeyVersionInfo",
    "KeyVersionRetired",
    "KeyringError",
    "RewrapProgress",
    "WrappedKey",
    "WrappedKeyStore",
    "WrappedRow",
    "aead_open",
    "aead_seal",
    "forget_cached_keys",
    "master_key",
    "master_key_id",
    "parse_master_key",
    "previous_master_keys",
    "pseudonym_key",
    "register_wrapped_key_store",
    "retire_drained_versions",
    "rewrap_batch",
    "rotation_complete",
    "tenant_key_rotate",
    "tenant_key_versions",
    "tenant_keys_create",
    "tenant_keys_rewrap",
    "user_key_new",
    "user_key_unwrap",
    "user_key_wrap",
]
