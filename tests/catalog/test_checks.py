"""The encoder model path is validated at start (system check) with a clear message."""

from django.test import override_settings

from apps.catalog.checks import check_encoder_settings, check_tenant_encoder_overrides
from apps.tenancy.services import tenant_update_settings


def _sotto(**changes):
    from django.conf import settings

    return {**settings.SOTTO, **changes}


def test_the_packaged_default_model_passes():
    assert check_encoder_settings() == []


def test_a_missing_model_folder_is_reported_with_its_path(tmp_path):
    with override_settings(SOTTO=_sotto(ENCODER_MODEL_PATH=str(tmp_path / "missing"))):
        errors = check_encoder_settings()
    assert [e.id for e in errors] == ["catalog.E001"]
    assert "missing" in errors[0].msg and "does not exist" in errors[0].msg


def test_a_folder_without_weights_is_reported(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 384}')
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with override_settings(SOTTO=_sotto(ENCODER_MODEL_PATH=str(tmp_path))):
        errors = check_encoder_settings()
    assert "weights are missing" in errors[0].msg


def test_a_model_of_the_wrong_width_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 768}')
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with override_settings(SOTTO=_sotto(ENCODER_MODEL_PATH=str(tmp_path))):
        errors = check_encoder_settings()
    assert "768-d" in errors[0].msg


def test_a_bad_precision_is_reported():
    with override_settings(SOTTO=_sotto(ENCODER_PRECISION="fp16")):
        assert [e.id for e in check_encoder_settings()] == ["catalog.E002"]


def test_a_tenants_bad_override_is_reported_by_the_database_check(tenant_a, tmp_path):
    assert check_tenant_encoder_overrides(databases=["default"]) == [] or all(
        tenant_a.slug not in e.msg for e in check_tenant_encoder_overrides(databases=["default"])
    )
    tenant_update_settings(
        tenant=tenant_a.tenant, changes={"encoder_model_path": str(tmp_path / "gone")}, actor="t"
    )
    errors = [e for e in check_tenant_encoder_overrides(databases=["default"]) if tenant_a.slug in e.msg]
    assert [e.id for e in errors] == ["catalog.E003"]
    assert check_tenant_encoder_overrides(databases=None) == []
