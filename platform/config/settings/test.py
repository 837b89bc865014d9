"""Tests: the same stack as local (real PostgreSQL, real broker), faster password hashing.

Each pytest session gets its own test database and queue prefix (exported to the environment so
the Celery worker and other subprocesses the tests start inherit them): parallel runs never collide.
"""

import os
import uuid

_session = uuid.uuid4().hex[:8]
os.environ.setdefault("SOTTO_TEST_DB", f"test_sotto_{_session}")
os.environ.setdefault("SOTTO_QUEUE_PREFIX", f"t{_session}.")

from config.settings.base import *  # noqa: E402, F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in production
SOTTO["API_KEY_CACHE_TTL_S"] = 0.0  # noqa: F405 - revocation must be visible at once in tests
