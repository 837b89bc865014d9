"""deploy/k8s, parsed: what `kubectl apply -k deploy/k8s` creates, checked against the settings,
the image and itself (selectors, ports, probes, secrets, autoscalers, disruption budgets)."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml
from django.urls import resolve

from tests.deploy.manifests import (
    DEPLOY,
    django_queues,
    dockerfile_stages,
    k8s,
    k8s_container_env,
    k8s_django_workloads,
    k8s_files,
    k8s_one,
    option,
    plain_env,
    pod_spec,
    required_env,
    secrets_init,
)

WORKLOADS = [w["metadata"]["name"] for w in k8s_django_workloads()]
DEPLOYMENTS = [d["metadata"]["name"] for d in k8s("Deployment")]


def _workload(name: str) -> dict[str, Any]:
    (found,) = [w for w in k8s_django_workloads() if w["metadata"]["name"] == name]
    return found


def _container(name: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(_workload(name))["containers"]
    (container,) = containers
    return container


def _pod_labels(name: str) -> dict[str, str]:
    labels: dict[str, str] = _workload(name)["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _allowed_hosts() -> list[str]:
    hosts: str = k8s_one("ConfigMap", "sotto-config")["data"]["DJANGO_ALLOWED_HOSTS"]
    return hosts.split(",")


def test_the_kustomization_applies_every_manifest_and_renames_the_one_image():
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}

    assert set(kustomization["resources"]) == files
    assert [image["name"] for image in kustomization["images"]] == ["sotto"]
    assert {w["metadata"]["name"] for w in k8s_django_workloads()} == {
        "sotto-web",
        "sotto-worker-encode",
        "sotto-worker-train",
        "sotto-worker-default",
        "sotto-beat",
        "sotto-migrate",
    }
    for name in WORKLOADS:
        assert _container(name)["image"] == "sotto", name


@pytest.mark.parametrize("name", WORKLOADS)
def test_every_django_container_gets_every_variable_the_production_settings_require(name):
    container = _container(name)
    env = k8s_container_env(container)
    files = k8s_files(_workload(name), container)

    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    for variable in required_env():
        if variable in plain_env():
            assert env.get(variable), f"{name}: {variable} missing"
            continue
        assert variable not in env, f"{name}: {variable} is a secret: mount it and set {variable}_FILE"
        assert env.get(f"{variable}_FILE") in files, f"{name}: {variable}_FILE is not a mounted Secret key"
    for key, value in env.items():
        if key.endswith("_FILE"):
            assert value in files, f"{name}: {key}={value} is not a mounted Secret key"
    assert "SOTTO_QUEUE_PREFIX" not in env


def test_secret_keys_are_the_file_names_secrets_init_writes():
    # so `kubectl create secret generic sotto-app --from-file=OUT/app/` (docs/deployment.md) fits
    layout = secrets_init().LAYOUT
    folders = {"sotto-app": "app", "sotto-migrate": "migrate"}
    for workload in k8s_django_workloads():
        for volume in pod_spec(workload)["volumes"]:
            if "secret" in volume:
                keys = {item["key"] for item in volume["secret"]["items"]}
                assert keys <= set(layout[folders[volume["secret"]["secretName"]]][0]), keys


def test_only_the_migrate_job_holds_the_owner_role_credentials():
    for name in WORKLOADS:
        env = k8s_container_env(_container(name))
        secrets = {v["secret"]["secretName"] for v in pod_spec(_workload(name))["volumes"] if "secret" in v}
        is_migrate = name == "sotto-migrate"
        assert ("DATABASE_OWNER_URL_FILE" in env) == is_migrate and ("sotto-migrate" in secrets) == is_migrate
        assert "DATABASE_OWNER_URL" not in env
    (job,) = k8s("Job")
    assert pod_spec(job)["restartPolicy"] == "Never"
    command = _container("sotto-migrate")["command"][-1]
    assert (
        "manage.py check --deploy --fail-level WARNING &&" in command
        and "manage.py migrate --noinput" in command
    )


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_every_deployment_has_probes_and_resources(name):
    container = _container(name)
    resources = container["resources"]

    assert container.get("livenessProbe") and container.get("readinessProbe")
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]


def test_http_probes_hit_the_health_urls_on_the_container_port_with_an_allowed_host():
    probes = 0
    for name in DEPLOYMENTS:
        container = _container(name)
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            http = container.get(kind, {}).get("httpGet")
            if not http:
                continue
            probes += 1
            expected = "health-ready" if kind == "readinessProbe" else "health-live"
            assert resolve(http["path"]).url_name == expected, (name, kind)
            assert http["port"] in ports
            headers = {h["name"]: h["value"] for h in http["httpHeaders"]}
            assert headers["Host"] in _allowed_hosts()
    assert probes == 3  # web: startup, liveness, readiness


def test_each_queue_has_one_worker_deployment_whose_probe_pings_that_worker():
    queues = {}
    for name in DEPLOYMENTS:
        command = _container(name)["command"]
        if command[:4] == ["celery", "-A", "config", "worker"]:
            queue = option(command, "-Q")
            queues[queue] = name
            assert name == f"sotto-worker-{queue}"
            assert option(command, "-n") == f"{queue}@%h"
            for kind in ("livenessProbe", "readinessProbe"):
                probe = shlex.split(_container(name)[kind]["exec"]["command"][-1])
                assert probe[:5] == ["celery", "-A", "config", "inspect", "ping"]
                assert option(probe, "-d") == f"{queue}@$HOSTNAME"
    assert set(queues) == django_queues()


def test_beat_is_a_single_replica_replaced_never_rolled():
    beat = k8s_one("Deployment", "sotto-beat")

    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert _container("sotto-beat")["command"][:4] == ["celery", "-A", "config", "beat"]
    assert all(h["spec"]["scaleTargetRef"]["name"] != "sotto-beat" for h in k8s("HorizontalPodAutoscaler"))


def test_web_and_every_worker_scale_horizontally_and_survive_voluntary_disruption():
    autoscaled = {}
    for hpa in k8s("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in DEPLOYMENTS
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        autoscaled[target["name"]] = hpa
    assert set(autoscaled) == set(DEPLOYMENTS) - {"sotto-beat"}
    web = autoscaled["sotto-web"]
    assert web["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in web["spec"]["metrics"]] == ["cpu"]

    covered = set()
    for pdb in k8s("PodDisruptionBudget"):
        matches = [n for n in DEPLOYMENTS if _selects(pdb["spec"]["selector"]["matchLabels"], _pod_labels(n))]
        assert len(matches) == 1, pdb["metadata"]["name"]
        covered.add(matches[0])
    assert covered == set(DEPLOYMENTS) - {"sotto-beat"}


@pytest.mark.parametrize("name", WORKLOADS)
def test_pods_run_as_non_root_on_a_read_only_root_with_the_image_writable_dirs_mounted(name):
    image_env = dockerfile_stages()[-1].env()
    spec = pod_spec(_workload(name))
    container = _container(name)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "emptyDir" in mounts[image_env["HOME"]] and "emptyDir" in mounts[image_env["SOTTO_VAR_DIR"]]
    # every process reads and writes the same audit checkpoint volume
    claim = mounts[image_env["SOTTO_AUDIT_CHECKPOINT_DIR"]]["persistentVolumeClaim"]["claimName"]
    assert k8s_one("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_service_ingress_and_network_policy_lead_to_the_web_port():
    service = k8s_one("Service", "sotto-web")
    web_ports = {p["name"]: p["containerPort"] for p in _container("sotto-web")["ports"]}
    assert _selects(service["spec"]["selector"], _pod_labels("sotto-web"))
    assert not _selects(service["spec"]["selector"], _pod_labels("sotto-worker-default"))
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in web_ports

    ingress = k8s_one("Ingress", "sotto-web")
    origins = k8s_one("ConfigMap", "sotto-config")["data"]["DJANGO_CSRF_TRUSTED_ORIGINS"].split(",")
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in _allowed_hosts() and f"https://{rule['host']}" in origins
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == "sotto-web" and backend["port"]["name"] == port["name"]
    assert {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]} == {
        r["host"] for r in ingress["spec"]["rules"]
    }

    policy = k8s_one("NetworkPolicy", "sotto-web-from-ingress-controller")
    assert _selects(policy["spec"]["podSelector"]["matchLabels"], _pod_labels("sotto-web"))
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == list(
        web_ports.values()
    )
