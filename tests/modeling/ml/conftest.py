"""Pure ML tests (``apps.modeling.ml``): no Django, so they also run with ``-p no:django``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fresh_modeling_caches() -> Iterator[None]:
    """Overrides the modeling fixture of the same name: pure ML code has no pointer or weight cache."""
    yield
