import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from apps.core.rls import EnableTenantRLS


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("catalog", "0001_initial"),
        ("tenancy", "0002_tenantkey"),
    ]

    operations = [
        migrations.CreateModel(
            name="EndUser",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("pseudonym", models.BinaryField(max_length=32)),
                ("wrapped_key", models.BinaryField(null=True)),
                ("key_version", models.PositiveIntegerField(null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "tenant",
                    models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, to="tenancy.tenant"
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="UserAttribute",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name_tag", models.BinaryField(max_length=32)),
                ("ciphertext", models.BinaryField()),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "tenant",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="tenancy.tenant"),
                ),
                (
                    "user",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attributes",
                        to="profiles.enduser",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="UserEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("event_key", models.BinaryField(max_length=32)),
                (
                    "type",
                    models.CharField(
                        choices=[
                            ("view", "View"),
                            ("click", "Click"),
                            ("cart", "Cart"),
                            ("purchase", "Purchase"),
                            ("rating", "Rating"),
                        ],
                        max_length=8,
                    ),
                ),
                ("value", models.FloatField()),
                ("ts", models.DateTimeField()),
                ("folded", models.BooleanField(default=False)),
                (
                    "item",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="catalog.item"
                    ),
                ),
                (
                    "tenant",
                    models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, to="tenancy.tenant"
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="profiles.enduser",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="UserState",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="state",
                        serialize=False,
                        to="profiles.enduser",
                    ),
                ),
                ("data", models.BinaryField(null=True)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "tenant",
                    models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, to="tenancy.tenant"
                    ),
                ),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.AddIndex(
            model_name="enduser",
            index=models.Index(
                condition=models.Q(("key_version__isnull", False)),
                fields=["tenant", "key_version"],
                name="profiles_enduser_keyver_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="enduser",
            constraint=models.UniqueConstraint(
                fields=("tenant", "pseudonym"), name="profiles_enduser_pseudonym_uniq"
            ),
        ),
        migrations.AddConstraint(
            model_name="userattribute",
            constraint=models.UniqueConstraint(
                fields=("user", "name_tag"), name="profiles_attribute_name_uniq"
            ),
        ),
        migrations.AddIndex(
            model_name="userevent",
            index=models.Index(fields=["user", "ts"], name="profiles_event_user_ts_idx"),
        ),
        migrations.AddIndex(
            model_name="userevent",
            index=models.Index(fields=["tenant", "ts"], name="profiles_event_tenant_ts_idx"),
        ),
        migrations.AddIndex(
            model_name="userevent",
            index=models.Index(
                condition=models.Q(("folded", False)), fields=["tenant"], name="profiles_event_pending_idx"
            ),
        ),
        migrations.AddConstraint(
            model_name="userevent",
            constraint=models.UniqueConstraint(
                fields=("tenant", "event_key"), name="profiles_event_idempotency"
            ),
        ),
        EnableTenantRLS("profiles_enduser"),
        EnableTenantRLS("profiles_userattribute"),
        EnableTenantRLS("profiles_userevent"),
        EnableTenantRLS("profiles_userstate"),
        # States are ~6 KB of float64: compressing them costs CPU on every update and saves nothing.
        migrations.RunSQL(
            "ALTER TABLE profiles_userstate ALTER COLUMN data SET STORAGE EXTERNAL",
            "ALTER TABLE profiles_userstate ALTER COLUMN data SET STORAGE EXTENDED",
        ),
    ]
