"""Audit chain tables: forced RLS, append-only triggers (even for the owner), chain-link check on insert."""

import django.db.models.deletion
from django.db import migrations, models

from apps.core.rls import EnableTenantRLS

# Genesis domain of apps/audit/chain.py: sha256(b"sotto-audit-genesis-v1\x00" + JSON text of the slug or null).
FORWARD = [
    r"""
    CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'tenants with history are suspended, never deleted; corrections are new events';
    END
    $$
    """,
    r"""
    CREATE FUNCTION audit_check_link() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        head_seq bigint;
        head_hash text;
        expected_slug text;
    BEGIN
        IF NEW.tenant_id IS NULL THEN
            IF NEW.tenant_slug IS NOT NULL THEN
                RAISE EXCEPTION 'platform audit events carry no tenant slug';
            END IF;
            SELECT sequence, hash INTO head_seq, head_hash FROM audit_auditevent
                WHERE tenant_id IS NULL ORDER BY sequence DESC LIMIT 1;
        ELSE
            SELECT slug INTO expected_slug FROM tenancy_tenant WHERE id = NEW.tenant_id;
            IF NEW.tenant_slug IS DISTINCT FROM expected_slug THEN
                RAISE EXCEPTION 'audit event tenant_slug % is not the slug of tenant %', NEW.tenant_slug, NEW.tenant_id;
            END IF;
            SELECT sequence, hash INTO head_seq, head_hash FROM audit_auditevent
                WHERE tenant_id = NEW.tenant_id ORDER BY sequence DESC LIMIT 1;
        END IF;
        IF head_seq IS NULL THEN
            IF NEW.sequence <> 1 OR NEW.prev_hash <> encode(sha256(
                    convert_to('sotto-audit-genesis-v1', 'UTF8') || '\x00'::bytea
                    || convert_to(COALESCE(to_json(NEW.tenant_slug)::text, 'null'), 'UTF8')), 'hex') THEN
                RAISE EXCEPTION 'audit chain must start at sequence 1 on its genesis hash';
            END IF;
        ELSIF NEW.sequence <> head_seq + 1 OR NEW.prev_hash <> head_hash THEN
            RAISE EXCEPTION 'audit event % does not extend the chain head % (concurrent writer or forged row)',
                NEW.sequence, head_seq;
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """CREATE TRIGGER audit_auditevent_link BEFORE INSERT ON audit_auditevent
       FOR EACH ROW EXECUTE FUNCTION audit_check_link()""",
    """CREATE TRIGGER audit_auditevent_append_only BEFORE UPDATE OR DELETE ON audit_auditevent
       FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()""",
    """CREATE TRIGGER audit_auditevent_no_truncate BEFORE TRUNCATE ON audit_auditevent
       FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()""",
    """CREATE TRIGGER audit_auditcheckpoint_append_only BEFORE UPDATE OR DELETE ON audit_auditcheckpoint
       FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()""",
    """CREATE TRIGGER audit_auditcheckpoint_no_truncate BEFORE TRUNCATE ON audit_auditcheckpoint
       FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()""",
]
BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_auditcheckpoint_no_truncate ON audit_auditcheckpoint",
    "DROP TRIGGER IF EXISTS audit_auditcheckpoint_append_only ON audit_auditcheckpoint",
    "DROP TRIGGER IF EXISTS audit_auditevent_no_truncate ON audit_auditevent",
    "DROP TRIGGER IF EXISTS audit_auditevent_append_only ON audit_auditevent",
    "DROP TRIGGER IF EXISTS audit_auditevent_link ON audit_auditevent",
    "DROP FUNCTION IF EXISTS audit_check_link()",
    "DROP FUNCTION IF EXISTS audit_refuse_change()",
]


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("tenancy", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant_slug", models.CharField(blank=True, max_length=63, null=True)),
                (
                    "kind",
                    models.CharField(choices=[("periodic", "Periodic"), ("export", "Export")], max_length=16),
                ),
                ("sequence", models.PositiveBigIntegerField()),
                ("head_hash", models.CharField(max_length=64)),
                ("signed_at", models.CharField(max_length=27)),
                ("first_sequence", models.PositiveBigIntegerField(blank=True, null=True)),
                ("first_prev_hash", models.CharField(blank=True, max_length=64, null=True)),
                ("key_id", models.CharField(max_length=16)),
                ("signature", models.CharField(max_length=88)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "tenant",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="tenancy.tenant",
                    ),
                ),
            ],
            options={
                "ordering": ["tenant_id", "sequence", "signed_at"],
                "indexes": [models.Index(fields=["tenant", "sequence"], name="audit_checkpoint_tenant_seq")],
            },
        ),
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("tenant_slug", models.CharField(blank=True, max_length=63, null=True)),
                ("sequence", models.PositiveBigIntegerField()),
                ("time", models.DateTimeField()),
                ("actor", models.CharField(max_length=200)),
                ("action", models.CharField(max_length=100)),
                ("target_type", models.CharField(blank=True, max_length=64)),
                ("target_id", models.CharField(blank=True, max_length=200)),
                ("details", models.JSONField(blank=True, default=dict)),
                ("prev_hash", models.CharField(max_length=64)),
                ("hash", models.CharField(max_length=64)),
                (
                    "tenant",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="tenancy.tenant",
                    ),
                ),
            ],
            options={
                "ordering": ["tenant_id", "sequence"],
                "indexes": [models.Index(fields=["tenant", "time"], name="audit_event_tenant_time")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant", "sequence"),
                        name="audit_event_one_per_sequence",
                        nulls_distinct=False,
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("sequence__gte", 1)), name="audit_event_sequence_positive"
                    ),
                ],
            },
        ),
        EnableTenantRLS("audit_auditevent"),
        EnableTenantRLS("audit_auditcheckpoint"),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
