"""The database backend's health check: free for a live idle connection, still catches a dead one."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections

from apps.core.pg_backend.base import DatabaseWrapper, idle_socket_quiet


@pytest.fixture
def wrapper(live_db: None) -> Iterator[Any]:
    """A second connection of the default alias, outside any transaction, as a request finds it."""
    other = connections.create_connection("default")
    other.ensure_connection()
    assert isinstance(other, DatabaseWrapper)
    assert getattr(other, "health_check_enabled")  # noqa: B009 - unstubbed attribute
    yield other
    other.close()


def _is_usable_calls(wrapper: Any, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    calls: list[bool] = []
    real = wrapper.is_usable

    def counted() -> bool:
        calls.append(real())
        return calls[-1]

    monkeypatch.setattr(wrapper, "is_usable", counted)
    return calls


def _new_request(wrapper: Any) -> None:
    wrapper.health_check_done = False  # what request_started does (close_if_unusable_or_obsolete)
    wrapper.close_if_health_check_failed()


def test_a_live_idle_connection_is_kept_without_a_select_1(wrapper, monkeypatch):
    calls = _is_usable_calls(wrapper, monkeypatch)
    raw = wrapper.connection
    _new_request(wrapper)
    assert calls == [] and wrapper.connection is raw
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_connection_whose_backend_was_terminated_is_replaced_before_the_request_uses_it(
    wrapper, monkeypatch
):
    calls = _is_usable_calls(wrapper, monkeypatch)
    raw = wrapper.connection
    with connection.cursor() as cursor:  # as a PostgreSQL restart or an operator would
        cursor.execute("SELECT pg_terminate_backend(%s)", [raw.info.backend_pid])
    select.select([raw.fileno()], [], [], 5.0)  # the server's goodbye arrives
    assert not idle_socket_quiet(raw)
    _new_request(wrapper)
    assert calls == [False], "a readable idle socket gets the real check, which fails"
    assert wrapper.connection is None
    with wrapper.cursor() as cursor:  # the request itself then runs on a new connection
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert wrapper.connection is not raw


def test_a_stray_message_on_a_live_connection_costs_the_real_check_and_keeps_it(wrapper, monkeypatch):
    raw = wrapper.connection
    with wrapper.cursor() as cursor:
        cursor.execute("LISTEN sotto_health_probe")
    with connection.cursor() as cursor:
        cursor.execute("NOTIFY sotto_health_probe")
    deadline = time.monotonic() + 5
    while idle_socket_quiet(raw) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not idle_socket_quiet(raw)
    calls = _is_usable_calls(wrapper, monkeypatch)
    _new_request(wrapper)
    assert calls == [True] and wrapper.connection is raw


def test_inside_a_transaction_the_check_is_the_real_one(wrapper, monkeypatch):
    calls = _is_usable_calls(wrapper, monkeypatch)
    wrapper.set_autocommit(False)
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert not idle_socket_quiet(wrapper.connection)
    _new_request(wrapper)
    assert calls == [True]
    wrapper.rollback()
    wrapper.set_autocommit(True)
