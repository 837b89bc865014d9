"""``make bench``: run every benchmark, print its table, write JSON under var/bench/.

Each ``bench/<name>_bench.py`` exposes ``main(out_dir: Path) -> dict``. Benchmarks never run in
``make test``: speed targets live here, with the figures recorded in docs/results/.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["encoder", "catalog", "ingest", "modeling", "model_scale", "serving", "slo"]


def machine() -> dict[str, object]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help=f"subset of {ORDER}")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    failures = 0
    for name in args.only or ORDER:
        module_name = f"bench.{name}_bench"
        if (
            importlib.util.find_spec(module_name) is None
            and importlib.util.find_spec(f"bench.{name}") is not None
        ):
            module_name = f"bench.{name}"  # e.g. bench.model_scale, named as its issue asks
        if importlib.util.find_spec(module_name) is None:
            print(f"-- {name}: no benchmark module yet, skipped")
            continue
        print(f"\n== {name} ==", flush=True)
        started = time.perf_counter()
        try:
            entry = importlib.import_module(module_name).main
            first = next(iter(inspect.signature(entry).parameters), "")
            # Command-line style benchmarks take argv; the others take the output folder.
            result = entry(["--out", str(args.out / f"{name}.json")]) if first == "argv" else entry(args.out)
            summary[name] = {"ok": True, "seconds": round(time.perf_counter() - started, 1), "result": result}
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failures += 1
            print(f"!! {name} failed: {type(exc).__name__}: {exc}")
            summary[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nwrote {args.out / 'summary.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
