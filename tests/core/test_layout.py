import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_platform_from_repo_root_is_still_the_standard_library_module():
    # Run from the repo root with the same path setup as manage.py/pytest: `platform` must be stdlib.
    code = (
        "import sys; sys.path[:0] = ['.', 'platform']; import platform, config;"
        "print(platform.__file__); print(platform.python_version())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    location, version = out.splitlines()
    assert "site-packages" not in location and location.endswith("platform.py")
    assert not location.startswith(str(ROOT))
    assert version == ".".join(map(str, sys.version_info[:3]))


def test_platform_folder_has_no_init_so_it_can_never_shadow_the_stdlib():
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert (ROOT / "platform" / "config" / "__init__.py").exists()


def _imported_apps(package: str) -> dict[str, set[str]]:
    """``{file: top-level apps it imports}`` for every module under ``apps/<package>`` (lazy imports too)."""
    import ast

    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "apps" / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            names |= {m.split(".")[1] for m in modules if m.startswith("apps.")}
        found[str(path.relative_to(ROOT))] = names
    return found


def test_core_imports_no_app_above_it():
    upper = {"tenancy", "catalog", "profiles", "modeling", "serving", "api", "webadmin", "demo"}
    offending = {f: names & upper for f, names in _imported_apps("core").items() if names & upper}
    assert offending == {}


def test_modeling_does_not_import_profiles():
    # profiles -> modeling.ml.features is the one allowed direction; the reverse goes through apps.core.hooks
    offending = [f for f, names in _imported_apps("modeling").items() if "profiles" in names]
    assert offending == []
