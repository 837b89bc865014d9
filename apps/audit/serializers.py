"""Typed response document of ``GET /api/v1/audit/public-key`` (OpenAPI only)."""

from __future__ import annotations

from rest_framework import serializers


class AuditPublicKeyOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    algorithm = serializers.CharField()
    key_id = serializers.CharField()
    fingerprint = serializers.CharField(help_text="compare it out of band before trusting the key")
    public_key_pem = serializers.CharField()
