"""Forced RLS on every modeling table, the append-only ledger, and the served item vectors.

Served vectors (``modeling_served_vector``) are partitioned twice: LIST by tenant, then LIST by
model version, so each (tenant, version) leaf has its own HNSW index and a version is dropped
whole. The runtime role may not run DDL, so SECURITY DEFINER functions owned by the owner role
(the one running this migration) create, index and drop leaves, as the catalogue does for its
content-vector partitions (``apps/catalog/migrations/0001_initial.py``):

- ``modeling_served_vector_version_create(tenant, version)``: the tenant's partition (if missing)
  and the version's leaf, each with forced RLS (same policy as every tenant table) and the
  runtime role's DML grant. Idempotent.
- ``modeling_served_vector_version_index(tenant, version, dim)``: the leaf's HNSW index
  (cosine, on ``embedding::vector(dim)``: the parent column has no fixed dimension so a model
  with another item dimension needs no migration) and ANALYZE. Run after the bulk load.
- ``modeling_served_vector_version_drop(tenant, version)``.
All three refuse unless the calling transaction is scoped to that tenant (or is the platform).

Catalogue changes reach served vectors in the database itself: deleting an item cascades, and a
trigger on ``catalog_item`` copies ``available``/``categories`` changes to every served version,
so the rule filters of ``served_knn`` never act on stale metadata.
"""

from django.conf import settings
from django.db import migrations

from apps.core.rls import rls_sql

_PART = "__PART__"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64

APPEND_ONLY = ["modeling_ledgerentry", "modeling_ledgermechanism"]
TENANT_TABLES = [
    "modeling_privacybudget",
    "modeling_trainingrun",
    "modeling_ledgerentry",
    "modeling_ledgermechanism",
    "modeling_modelversion",
    "modeling_activemodel",
    "modeling_popularityrelease",
    "modeling_popularityscore",
]


def _runtime_role() -> str:
    return str(settings.SOTTO.get("RUNTIME_ROLE") or "")


REFUSE = """
CREATE OR REPLACE FUNCTION modeling_ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'privacy ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'a charge is never undone; budget changes are new ledger rows or a new total';
END
$$;
"""


def _append_only_sql(table: str) -> str:
    return f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION modeling_ledger_refuse_change();
CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION modeling_ledger_refuse_change();
"""


PARENT = """
CREATE TABLE modeling_served_vector (
    tenant_id bigint NOT NULL,
    version integer NOT NULL,
    item_id bigint NOT NULL REFERENCES catalog_item (id) ON DELETE CASCADE,
    external_id varchar(200) NOT NULL,
    embedding vector NOT NULL,
    available boolean NOT NULL DEFAULT true,
    categories varchar(100)[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, version, item_id)
) PARTITION BY LIST (tenant_id);
"""

GUARD = """
CREATE OR REPLACE FUNCTION modeling_served_vector_guard(p_tenant bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tenancy_tenant WHERE id = p_tenant) THEN
        RAISE EXCEPTION 'no tenant with id %', p_tenant;
    END IF;
    IF NOT (COALESCE(current_setting('app.tenant_id', true), '') = p_tenant::text
            OR COALESCE(current_setting('app.platform', true), '') = 'on') THEN
        RAISE EXCEPTION 'served vectors of tenant % may only be changed in a transaction scoped to it', p_tenant
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION modeling_served_vector_guard(bigint) FROM PUBLIC;
"""


def _secure_statements(var: str) -> str:
    """plpgsql that puts table ``var`` under forced RLS and grants the runtime role DML on it."""
    rls_statements = [s.strip() for s in rls_sql(_PART)[0].split(";") if s.strip()]
    lines = [
        f"        EXECUTE replace($rls${stmt}$rls$, '{_PART}', quote_ident({var}));"
        for stmt in rls_statements
    ]
    runtime = _runtime_role().replace("'", "''")
    if runtime:
        lines.append(
            f"        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', {var}, '{runtime}');"
        )
    return "\n".join(lines)


def _create_function_sql() -> str:
    return f"""
CREATE OR REPLACE FUNCTION modeling_served_vector_version_create(p_tenant bigint, p_version integer) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
    tpart text := 'modeling_served_vector_t' || p_tenant::text;
    vpart text := 'modeling_served_vector_t' || p_tenant::text || '_v' || p_version::text;
BEGIN
    PERFORM modeling_served_vector_guard(p_tenant);
    IF p_version < 1 THEN
        RAISE EXCEPTION 'model versions start at 1';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('modeling_served_vector:' || p_tenant::text, 0));
    IF to_regclass(tpart) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF modeling_served_vector FOR VALUES IN (%s) PARTITION BY LIST (version)',
                       tpart, p_tenant);
{_secure_statements("tpart")}
    END IF;
    IF to_regclass(vpart) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES IN (%s)', vpart, tpart, p_version);
{_secure_statements("vpart")}
    END IF;
    RETURN vpart;
END
$fn$;
REVOKE ALL ON FUNCTION modeling_served_vector_version_create(bigint, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION modeling_served_vector_version_index(p_tenant bigint, p_version integer, p_dim integer)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
    vpart text := 'modeling_served_vector_t' || p_tenant::text || '_v' || p_version::text;
BEGIN
    PERFORM modeling_served_vector_guard(p_tenant);
    IF p_dim < 1 OR p_dim > 2000 THEN
        RAISE EXCEPTION 'served vectors must have 1 to 2000 dimensions, not %', p_dim;
    END IF;
    IF to_regclass(vpart) IS NULL THEN
        RAISE EXCEPTION 'no served vectors for tenant % version %', p_tenant, p_version;
    END IF;
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON %I USING hnsw ((embedding::vector(%s)) vector_cosine_ops) '
        'WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})', vpart || '_hnsw', vpart, p_dim);
    EXECUTE format('ANALYZE %I', vpart);
END
$fn$;
REVOKE ALL ON FUNCTION modeling_served_vector_version_index(bigint, integer, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION modeling_served_vector_version_drop(p_tenant bigint, p_version integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
BEGIN
    PERFORM modeling_served_vector_guard(p_tenant);
    EXECUTE format('DROP TABLE IF EXISTS %I', 'modeling_served_vector_t' || p_tenant::text || '_v' || p_version::text);
END
$fn$;
REVOKE ALL ON FUNCTION modeling_served_vector_version_drop(bigint, integer) FROM PUBLIC;
"""  # noqa: S608 - built from constants at migration time, no user input


TENANT_DROP = """
CREATE OR REPLACE FUNCTION modeling_served_vector_drop_tenant() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', 'modeling_served_vector_t' || OLD.id::text);
    RETURN OLD;
END
$fn$;
CREATE TRIGGER modeling_served_vector_drop_tenant AFTER DELETE ON tenancy_tenant
    FOR EACH ROW EXECUTE FUNCTION modeling_served_vector_drop_tenant();
"""

ITEM_SYNC = """
CREATE OR REPLACE FUNCTION modeling_served_vector_sync_item() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE modeling_served_vector SET available = NEW.available, categories = NEW.categories
    WHERE tenant_id = NEW.tenant_id AND item_id = NEW.id;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER modeling_served_vector_sync_item AFTER UPDATE OF available, categories ON catalog_item
    FOR EACH ROW WHEN (OLD.available IS DISTINCT FROM NEW.available OR OLD.categories IS DISTINCT FROM NEW.categories)
    EXECUTE FUNCTION modeling_served_vector_sync_item();
"""

REVERSE = """
DROP TRIGGER IF EXISTS modeling_served_vector_sync_item ON catalog_item;
DROP FUNCTION IF EXISTS modeling_served_vector_sync_item();
DROP TRIGGER IF EXISTS modeling_served_vector_drop_tenant ON tenancy_tenant;
DROP FUNCTION IF EXISTS modeling_served_vector_drop_tenant();
DROP FUNCTION IF EXISTS modeling_served_vector_version_drop(bigint, integer);
DROP FUNCTION IF EXISTS modeling_served_vector_version_index(bigint, integer, integer);
DROP FUNCTION IF EXISTS modeling_served_vector_version_create(bigint, integer);
DROP FUNCTION IF EXISTS modeling_served_vector_guard(bigint);
DROP TABLE IF EXISTS modeling_served_vector CASCADE;
"""


def _forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    qn = schema_editor.quote_name
    with schema_editor.connection.cursor() as cursor:
        for table in TENANT_TABLES:
            cursor.execute(rls_sql(table)[0])
        cursor.execute(REFUSE)
        for table in APPEND_ONLY:
            cursor.execute(_append_only_sql(table))
        cursor.execute(PARENT)
        cursor.execute(rls_sql("modeling_served_vector")[0])
        cursor.execute(GUARD)
        cursor.execute(_create_function_sql())
        runtime = _runtime_role()
        if runtime:
            for signature in (
                "version_create(bigint, integer)",
                "version_index(bigint, integer, integer)",
                "version_drop(bigint, integer)",
            ):
                cursor.execute(
                    f"GRANT EXECUTE ON FUNCTION modeling_served_vector_{signature} TO {qn(runtime)}"
                )
        cursor.execute(TENANT_DROP)
        cursor.execute(ITEM_SYNC)


def _backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(REVERSE)
        for table in APPEND_ONLY:
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        cursor.execute("DROP FUNCTION IF EXISTS modeling_ledger_refuse_change()")
        for table in TENANT_TABLES:
            cursor.execute(rls_sql(table)[1])


class Migration(migrations.Migration):
    dependencies = [
        ("modeling", "0001_initial"),
        ("catalog", "0002_partition_analyze"),
        ("core", "0001_pgvector"),
    ]

    operations = [migrations.RunPython(_forward, _backward)]
