"""``audit_export`` and ``audit_checkpoint``: the operator's command-line doors to the same services."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.audit.models import AuditCheckpoint
from apps.audit.selectors import audit_public_key
from apps.audit.verify_audit_bundle import verify_bundle
from apps.core.tenant_db import tenant_context


def test_audit_export_writes_a_bundle_that_verifies(tenant_a, tmp_path):
    out = tmp_path / "bundle.zip"
    call_command(
        "audit_export",
        "--tenant",
        tenant_a.slug,
        "--out",
        str(out),
        "--since",
        "2000-01-01",
        stdout=StringIO(),
    )
    report = verify_bundle(
        out.read_bytes(), public_key_pem=audit_public_key().public_key_pem.encode(), tenant=tenant_a.slug
    )
    assert report.events >= 2 and report.first == 1


def test_audit_export_writes_csv_on_request(tenant_a, tmp_path):
    out = tmp_path / "events.csv"
    call_command(
        "audit_export", "--tenant", tenant_a.slug, "--out", str(out), "--format", "csv", stdout=StringIO()
    )
    assert out.read_bytes().startswith("\ufeffsequence,time,tenant".encode())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "no-such-tenant-xyz"], "no tenant"),
        (["--since", "last tuesday"], "not an ISO 8601"),
        (["--since", "2025-02-01", "--until", "2025-01-01"], "earlier than until"),
    ],
)
def test_audit_export_reports_usage_errors(tenant_a, tmp_path, args, message):
    argv = ["--tenant", tenant_a.slug, "--out", str(tmp_path / "x.zip"), *args]
    with pytest.raises(CommandError, match=message):
        call_command("audit_export", *argv, stdout=StringIO())
    assert not (tmp_path / "x.zip").exists()


def test_audit_checkpoint_signs_the_moved_chains(tenant_a):
    out = StringIO()
    try:
        call_command("audit_checkpoint", stdout=out)
    except SystemExit as exc:  # other tests leave deliberately broken chains behind
        assert exc.code == 1
    counts = json.loads(out.getvalue())
    assert counts["signed"] >= 1
    with tenant_context(tenant_a.tenant.id):
        assert AuditCheckpoint.objects.filter(tenant_id=tenant_a.tenant.id, kind="periodic").count() == 1
