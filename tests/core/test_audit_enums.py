"""Audit actions, system actors and error codes are closed sets: every one ``apps/`` writes is a member."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

from apps.core.audit import AuditAction, SystemActor, key_actor, user_actor
from apps.core.errors import ErrorCode

APPS = Path(__file__).resolve().parents[2] / "apps"
# callables whose ``action`` ends up on the audit chain (``_audit``/``point_at`` forward it to ``audit.record``)
_AUDIT_CALLS = {"record", "audit_append", "point_at", "_audit"}


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(APPS.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _leaves(node: ast.expr) -> Iterator[ast.expr]:
    if isinstance(node, ast.IfExp):
        yield from _leaves(node.body)
        yield from _leaves(node.orelse)
    else:
        yield node


def _audit_actions() -> Iterator[tuple[str, ast.expr]]:
    for path, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _name(node.func) not in _AUDIT_CALLS:
                continue
            values = [kw.value for kw in node.keywords if kw.arg == "action"]
            if _name(node.func) == "_audit" and node.args:
                values.append(node.args[0])
            for value in values:
                for leaf in _leaves(value):
                    yield f"{path.relative_to(APPS.parent)}:{leaf.lineno}", leaf


def test_every_audited_action_in_apps_is_an_audit_action_member():
    found, literals, unknown = 0, [], []
    for where, leaf in _audit_actions():
        found += 1
        if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
            literals.append(f"{where}: {leaf.value!r}")
        elif (
            isinstance(leaf, ast.Attribute)
            and _name(leaf.value) == "AuditAction"
            and leaf.attr not in AuditAction.__members__
        ):
            unknown.append(f"{where}: AuditAction.{leaf.attr}")
    assert found > 30  # the walk sees the call sites at all
    assert not literals, f"use AuditAction members, not strings: {literals}"
    assert not unknown, unknown


def test_members_are_their_strings_so_stored_values_are_unchanged():
    assert AuditAction("training_run.failed") is AuditAction.TRAINING_RUN_FAILED
    assert str(AuditAction.TRAINING_RUN_FAILED) == "training_run.failed"
    assert json.dumps({"a": AuditAction.AUTH_LOGIN}) == '{"a": "auth.login"}'
    assert f"{SystemActor.TASK_MODELING_TRAIN}" == "task:modeling.train"
    assert json.dumps(ErrorCode.NOT_FOUND) == '"not_found"'
    assert key_actor("sk_ab12") == "key:sk_ab12"
    assert user_actor("alice") == "user:alice"
    for enum in (AuditAction, SystemActor, ErrorCode):
        values = [m.value for m in enum]
        assert len(values) == len(set(values)), enum
