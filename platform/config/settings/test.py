"""Tests: the same stack as local (real PostgreSQL, real broker), faster password hashing."""

from config.settings.base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in production
SOTTO["API_KEY_CACHE_TTL_S"] = 0.0  # noqa: F405 - revocation must be visible at once in tests
