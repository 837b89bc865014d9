import django.db.models.deletion
from django.db import migrations, models

from apps.core.rls import EnableTenantRLS


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="TenantKey",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "purpose",
                    models.CharField(
                        choices=[("enc", "Encryption"), ("pseudonym", "Pseudonym")], max_length=16
                    ),
                ),
                ("version", models.PositiveIntegerField()),
                (
                    "status",
                    models.CharField(
                        choices=[("active", "Active"), ("retiring", "Retiring"), ("retired", "Retired")],
                        default="active",
                        max_length=16,
                    ),
                ),
                ("wrapped", models.BinaryField(null=True)),
                ("master_key_id", models.CharField(max_length=16)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("retired_at", models.DateTimeField(blank=True, null=True)),
                (
                    "tenant",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="tenancy.tenant"),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant", "purpose", "version"), name="tenantkey_unique_version"
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("status", "active")),
                        fields=("tenant", "purpose"),
                        name="tenantkey_one_active",
                    ),
                ],
            },
        ),
        EnableTenantRLS("tenancy_tenantkey"),
    ]
