"""Sign-in failures, counted per (username, client address) to throttle password guessing.

Platform-level rows (no tenant): a sign-in happens before anyone knows which tenant is meant.
"""

from __future__ import annotations

from django.db import models


class LoginFailure(models.Model):
    username = models.CharField(max_length=150)
    ip = models.CharField(max_length=64)
    at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["username", "ip", "at"], name="webadmin_loginfail_key")]

    def __str__(self) -> str:
        return f"{self.username}@{self.ip} {self.at:%Y-%m-%d %H:%M:%S}"
