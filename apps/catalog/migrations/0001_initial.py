"""Items, and content vectors in a table partitioned by tenant (LIST), one HNSW index per partition.

The runtime role may not run DDL, so partitions are created and dropped by SECURITY DEFINER
functions owned by the owner role (the role that runs this migration):

- ``catalog_itemvector_partition_create(tenant_id)``: the partition, its HNSW index, forced RLS
  with the same policy as the parent, and the runtime role's DML grant. Idempotent. Called by the
  ``on_tenant_created`` hook inside the tenant-creating transaction (and here for existing tenants).
- a trigger on ``tenancy_tenant`` drops the partition when its tenant row is deleted.
"""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from apps.core.rls import EnableTenantRLS, rls_sql

VECTOR_DIM = 384
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
_PART = "__PART__"


def _runtime_role() -> str:
    return str(settings.SOTTO.get("RUNTIME_ROLE") or "")


PARENT = f"""
CREATE TABLE catalog_itemvector (
    tenant_id bigint NOT NULL,
    item_id bigint NOT NULL REFERENCES catalog_item (id) ON DELETE CASCADE,
    external_id varchar(200) NOT NULL,
    embedding vector({VECTOR_DIM}) NOT NULL,
    available boolean NOT NULL DEFAULT true,
    categories varchar(100)[] NOT NULL DEFAULT '{{}}',
    model varchar(200) NOT NULL,
    content_hash varchar(64) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, item_id)
) PARTITION BY LIST (tenant_id);
"""


def _create_function_sql() -> str:
    rls_statements = [s.strip() for s in rls_sql(_PART)[0].split(";") if s.strip()]
    executes = "\n".join(
        f"    EXECUTE replace($rls${stmt}$rls$, '{_PART}', quote_ident(part));" for stmt in rls_statements
    )
    runtime = _runtime_role().replace("'", "''")
    grant = (
        f"    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', part, '{runtime}');"
        if runtime
        else ""
    )
    return f"""
CREATE OR REPLACE FUNCTION catalog_itemvector_partition_create(p_tenant bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
    part text := 'catalog_itemvector_t' || p_tenant::text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tenancy_tenant WHERE id = p_tenant) THEN
        RAISE EXCEPTION 'no tenant with id %', p_tenant;
    END IF;
    -- serialise concurrent creators of the same partition
    PERFORM pg_advisory_xact_lock(hashtext('catalog_itemvector'), p_tenant::int);
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF catalog_itemvector FOR VALUES IN (%s)', part, p_tenant);
    EXECUTE format(
        'CREATE INDEX %I ON %I USING hnsw (embedding vector_cosine_ops) WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})',
        part || '_hnsw', part);
{executes}
{grant}
END
$fn$;
REVOKE ALL ON FUNCTION catalog_itemvector_partition_create(bigint) FROM PUBLIC;
"""  # noqa: S608 # nosec B608 - built from constants at migration time, no user input


DROP_TRIGGER = """
CREATE OR REPLACE FUNCTION catalog_itemvector_drop_partition() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', 'catalog_itemvector_t' || OLD.id::text);
    RETURN OLD;
END
$fn$;
CREATE TRIGGER catalog_itemvector_drop_partition AFTER DELETE ON tenancy_tenant
    FOR EACH ROW EXECUTE FUNCTION catalog_itemvector_drop_partition();
"""

REVERSE = """
DROP TRIGGER IF EXISTS catalog_itemvector_drop_partition ON tenancy_tenant;
DROP FUNCTION IF EXISTS catalog_itemvector_drop_partition();
DROP FUNCTION IF EXISTS catalog_itemvector_partition_create(bigint);
DROP TABLE IF EXISTS catalog_itemvector CASCADE;
"""


def _forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(PARENT)
        forward, _ = rls_sql("catalog_itemvector")
        cursor.execute(forward)
        cursor.execute(_create_function_sql())
        runtime = _runtime_role()
        if runtime:
            cursor.execute(
                "GRANT EXECUTE ON FUNCTION catalog_itemvector_partition_create(bigint) TO "
                + schema_editor.quote_name(runtime)
            )
        cursor.execute(DROP_TRIGGER)
        cursor.execute("SELECT catalog_itemvector_partition_create(id) FROM tenancy_tenant")


def _backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(REVERSE)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("core", "0001_pgvector"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("external_id", models.CharField(max_length=200)),
                ("title", models.CharField(max_length=500)),
                ("description", models.TextField(blank=True, default="")),
                (
                    "categories",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.CharField(max_length=100), blank=True, default=list, size=None
                    ),
                ),
                ("attributes", models.JSONField(blank=True, default=dict)),
                ("available", models.BooleanField(default=True)),
                ("content_hash", models.CharField(max_length=64)),
                (
                    "encoding_status",
                    models.CharField(
                        choices=[("pending", "Pending"), ("ready", "Ready"), ("failed", "Failed")],
                        default="pending",
                        max_length=8,
                    ),
                ),
                ("encoded_hash", models.CharField(blank=True, default="", max_length=64)),
                ("encoding_model", models.CharField(blank=True, default="", max_length=200)),
                ("encoding_truncated", models.BooleanField(default=False)),
                ("encoding_error", models.CharField(blank=True, default="", max_length=500)),
                ("encoding_updated_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "tenant",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="tenancy.tenant"),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant", "external_id"), name="catalog_item_unique_external_id"
                    )
                ],
                "indexes": [
                    models.Index(fields=["tenant", "encoding_status"], name="catalog_item_status_idx")
                ],
            },
        ),
        EnableTenantRLS("catalog_item"),
        migrations.RunPython(_forward, _backward),
    ]
