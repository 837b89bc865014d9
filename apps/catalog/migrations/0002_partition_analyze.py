"""Let the runtime role refresh planner statistics of its tenant's vector partition.

ANALYZE needs table ownership (or MAINTAIN); the runtime role has neither, so it calls this
SECURITY DEFINER function owned by the owner role. After a bulk import the planner otherwise
believes the partition is nearly empty (until autovacuum's next analyze) and sorts every row
instead of walking the HNSW index.
"""

from django.conf import settings
from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION catalog_itemvector_partition_analyze(p_tenant bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
    part text := 'catalog_itemvector_t' || p_tenant::text;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        EXECUTE format('ANALYZE %I', part);
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION catalog_itemvector_partition_analyze(bigint) FROM PUBLIC;
"""


def _forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(FUNCTION)
        runtime = str(settings.SOTTO.get("RUNTIME_ROLE") or "")
        if runtime:
            cursor.execute(
                "GRANT EXECUTE ON FUNCTION catalog_itemvector_partition_analyze(bigint) TO "
                + schema_editor.quote_name(runtime)
            )


def _backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DROP FUNCTION IF EXISTS catalog_itemvector_partition_analyze(bigint)")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [migrations.RunPython(_forward, _backward)]
