"""bandit over the shipped code (apps, platform, bench) with the project's configuration.

The skipped tests and each ``# nosec`` are justified in docs/results/reliability.md; anything else
bandit reports fails the suite. A planted shell injection proves the scan with this configuration
still finds what it should.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def bandit(*targets: Path | str) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bandit",
            "-q",
            "-c",
            str(ROOT / "pyproject.toml"),
            "-f",
            "json",
            "-r",
            *map(str, targets),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_bandit_reports_nothing_in_the_shipped_code():
    report = bandit("apps", "platform", "bench")
    found = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]
    ]
    assert found == [], "\n".join(found)
    assert not report["errors"], report["errors"]


def test_the_same_configuration_still_finds_a_planted_shell_injection(tmp_path):
    (tmp_path / "planted.py").write_text(
        "import subprocess\n\n\ndef run(arg):\n    subprocess.call('ls ' + arg, shell=True)\n"
    )
    report = bandit(tmp_path)
    assert [r["test_id"] for r in report["results"]] == ["B602"]
