"""Concurrent writers (threads with their own connections, separate processes) leave one
unbroken chain: sequences 1..N without gaps or forks, every link and hash verified."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.db import connections

from apps.audit.chain import verify_chain
from apps.audit.models import AuditEvent
from apps.audit.services import audit_append, audit_verify_live, row_to_event
from apps.core.tenant_db import tenant_context

ROOT = Path(__file__).resolve().parents[2]


def _assert_one_unbroken_chain(persona, expected_actions):
    with tenant_context(persona.tenant.id):
        events = [
            row_to_event(r)
            for r in AuditEvent.objects.filter(tenant_id=persona.tenant.id).order_by("sequence")
        ]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert verify_chain(events, tenant=persona.slug).ok
    assert audit_verify_live(persona.tenant).ok
    written = sorted(e["details"]["n"] for e in events if e["action"] == "test.concurrent")
    assert written == sorted(expected_actions)


def test_concurrent_threads_cannot_fork_the_chain(tenant_a):
    threads, per_thread = 4, 8
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                audit_append(
                    tenant_id=tenant_a.tenant.id,
                    actor=f"thread:{w}",
                    action="test.concurrent",
                    details={"n": w * 100 + i},
                )
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)
        finally:
            connections.close_all()  # each thread had its own connection

    pool = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert errors == []
    _assert_one_unbroken_chain(tenant_a, [w * 100 + i for w in range(threads) for i in range(per_thread)])


_CHILD = """
import os, sys, time
import django
django.setup()
from apps.audit.services import audit_append
tenant_id, worker, count, start_at = (int(x) for x in sys.argv[1:5])
while time.time() < start_at:
    time.sleep(0.01)
for i in range(count):
    audit_append(tenant_id=tenant_id, actor=f"proc:{worker}", action="test.concurrent", details={"n": worker * 100 + i})
"""


def test_concurrent_processes_cannot_fork_the_chain(tenant_a):
    from django.conf import settings

    env = dict(os.environ)
    env["SOTTO_DB_NAME"] = settings.DATABASES["default"]["NAME"]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "platform"), env.get("PYTHONPATH", "")])
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    procs, per_proc = 3, 8
    start_at = int(time.time()) + 4  # all start together, after Django has loaded in each
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tenant_a.tenant.id), str(w), str(per_proc), str(start_at)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for w in range(procs)
    ]
    outputs = [c.communicate(timeout=180)[0].decode(errors="replace") for c in children]
    assert [c.returncode for c in children] == [0] * procs, outputs
    _assert_one_unbroken_chain(tenant_a, [w * 100 + i for w in range(procs) for i in range(per_proc)])
