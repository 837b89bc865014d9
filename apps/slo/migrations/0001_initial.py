import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models

from apps.core.rls import EnableTenantRLS

# Element-wise sum of two bucket-count arrays: how a flush adds its counts to a stored row.
ADD_COUNTS_SQL = """
CREATE OR REPLACE FUNCTION slo_add_counts(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(COALESCE(x, 0) + COALESCE(y, 0) ORDER BY i)
    FROM unnest(a, b) WITH ORDINALITY AS u(x, y, i)
$$;
"""


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("tenancy", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="TaskTotal",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("queue", models.CharField(max_length=64)),
                ("state", models.CharField(max_length=16)),
                (
                    "counts",
                    django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None),
                ),
                ("total", models.BigIntegerField()),
                ("sum_ms", models.FloatField()),
            ],
            options={
                "db_table": "slo_tasktotal",
                "constraints": [models.UniqueConstraint(fields=("queue", "state"), name="slo_task_unique")],
            },
        ),
        migrations.CreateModel(
            name="LatencyHistogram",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("endpoint_class", models.CharField(max_length=16)),
                ("status_class", models.CharField(max_length=8)),
                ("width_s", models.IntegerField()),
                ("start", models.DateTimeField()),
                (
                    "counts",
                    django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None),
                ),
                ("total", models.BigIntegerField()),
                ("sum_ms", models.FloatField()),
                (
                    "tenant",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="tenancy.tenant"),
                ),
            ],
            options={
                "db_table": "slo_latencyhistogram",
                "indexes": [
                    models.Index(fields=["tenant", "start"], name="slo_hist_tenant_start"),
                    models.Index(fields=["width_s", "start"], name="slo_hist_width_start"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant", "endpoint_class", "status_class", "width_s", "start"),
                        name="slo_hist_unique",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="LatencyTotal",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("endpoint_class", models.CharField(max_length=16)),
                ("status_class", models.CharField(max_length=8)),
                (
                    "counts",
                    django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), size=None),
                ),
                ("total", models.BigIntegerField()),
                ("sum_ms", models.FloatField()),
                (
                    "tenant",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="tenancy.tenant"),
                ),
            ],
            options={
                "db_table": "slo_latencytotal",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant", "endpoint_class", "status_class"), name="slo_total_unique"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SloAlert",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("endpoint_class", models.CharField(max_length=16)),
                (
                    "sli",
                    models.CharField(
                        choices=[("latency", "Latency"), ("availability", "Availability")], max_length=16
                    ),
                ),
                ("severity", models.CharField(choices=[("fast", "Fast"), ("slow", "Slow")], max_length=8)),
                ("factor", models.FloatField()),
                ("long_window_s", models.IntegerField()),
                ("short_window_s", models.IntegerField()),
                ("burn_long", models.FloatField()),
                ("burn_short", models.FloatField()),
                ("raised_at", models.DateTimeField()),
                ("cleared_at", models.DateTimeField(blank=True, null=True)),
                ("last_burn_long", models.FloatField()),
                ("last_burn_short", models.FloatField()),
                ("last_evaluated_at", models.DateTimeField()),
                (
                    "tenant",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="tenancy.tenant"),
                ),
            ],
            options={
                "db_table": "slo_alert",
                "ordering": ["-raised_at"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("cleared_at__isnull", True)),
                        fields=("tenant", "endpoint_class", "sli", "severity"),
                        name="slo_alert_one_open",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SloObjective",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("endpoint_class", models.CharField(max_length=16)),
                ("latency_threshold_ms", models.FloatField()),
                ("latency_target", models.FloatField()),
                ("availability_target", models.FloatField()),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("updated_by", models.CharField(blank=True, max_length=150)),
                (
                    "tenant",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="tenancy.tenant"),
                ),
            ],
            options={
                "db_table": "slo_objective",
                "constraints": [
                    models.UniqueConstraint(fields=("tenant", "endpoint_class"), name="slo_objective_unique")
                ],
            },
        ),
        migrations.RunSQL(ADD_COUNTS_SQL, "DROP FUNCTION IF EXISTS slo_add_counts(bigint[], bigint[]);"),
        EnableTenantRLS("slo_latencyhistogram"),
        EnableTenantRLS("slo_latencytotal"),
        EnableTenantRLS("slo_objective"),
        EnableTenantRLS("slo_alert"),
    ]
