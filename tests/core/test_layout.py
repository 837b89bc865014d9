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
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    location, version = out.splitlines()
    assert "site-packages" not in location and location.endswith("platform.py")
    assert not location.startswith(str(ROOT))
    assert version == ".".join(map(str, sys.version_info[:3]))


def test_platform_folder_has_no_init_so_it_can_never_shadow_the_stdlib():
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert (ROOT / "platform" / "config" / "__init__.py").exists()
