from django.db import migrations

CREATE = """
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS vector;
EXCEPTION WHEN insufficient_privilege OR undefined_file THEN
    RAISE EXCEPTION 'pgvector is required: ask a superuser to run CREATE EXTENSION vector in this database (%)', SQLERRM;
END $$;
"""


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunSQL(CREATE, migrations.RunSQL.noop)]
