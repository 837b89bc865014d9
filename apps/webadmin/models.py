"""Sign-in failures, counted per (username, client address) to throttle password guessing.

Platform-level rows (no tenant): a sign-in happens before anyone knows which tenant is meant.
"""

from __future__ import annotations

from django.db import models


class LoginFailure(models.Model):
    username_digest = models.CharField(max_length=64)  # keyed HMAC of the typed username, never the text
    ip = models.CharField(max_length=64)
    at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["username_digest", "ip", "at"], name="webadmin_loginfail_key")]

    def __str__(self) -> str:
        return f"{self.username_digest[:8]}@{self.ip} {self.at:%Y-%m-%d %H:%M:%S}"
