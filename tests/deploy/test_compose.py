"""The production compose files, image build and environment template, checked without a Docker engine.

The YAML is parsed (PyYAML, merge keys resolved) and its structure checked: images, health checks, start order,
GPU reservations, volumes, and that every variable the settings read is documented in ``.env.example``. Where a
``docker compose`` (v2 plugin) or ``docker-compose`` binary exists, its ``config`` validation runs too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILES = ["compose.yaml", "compose.gpu-host.yaml"]
ENV_READERS = re.compile(r"\b(?:env_str|env_bool|env_int|env_list|_int|environ\.get|getenv)\(\s*\"([A-Z][A-Z0-9_]+)\"")
# Read only by the development runner (`make run`), never by a production process.
DEV_ONLY_VARS = {
    "PORT",
    "HOST",
    "LVIT_ADMIN_USER",
    "LVIT_ADMIN_PASSWORD",
    "LVIT_DEMO_EPOCHS",
    "LVIT_DEMO_IMG_SIZE",
}  # make run only
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def load_compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text())


def env_example() -> dict[str, str]:
    """``NAME=value`` lines of ``.env.example``; commented ``# NAME=default`` lines count as documented too."""
    values: dict[str, str] = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values.setdefault(match.group(1), match.group(2))
    return values


def env_example_active() -> dict[str, str]:
    """Only the uncommented assignments: what compose actually passes."""
    values = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def is_one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def celery_queue(service: dict[str, Any]) -> str | None:
    command = command_of(service)
    if "celery" not in command or "worker" not in command:
        return None
    for part in command:
        if part.startswith("--queues="):
            return part.split("=", 1)[1]
    return None


@pytest.fixture(scope="module", params=COMPOSE_FILES)
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_compose(request.param)


def test_every_service_has_an_image_or_a_build(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("image") or service.get("build"), f"{name}: neither image nor build"
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file(), f"{name}: build file missing"


def test_long_running_services_have_health_checks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if is_one_shot(service):
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name} runs continuously but has no health check"
        assert not check.get("disable"), name


def test_depends_on_names_existing_services_with_satisfiable_conditions(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: use the long depends_on form with conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            assert condition in DEPENDS_CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert services[target].get("healthcheck", {}).get("test"), f"{target} has no health check"
            if condition == "service_completed_successfully":
                assert is_one_shot(services[target]), f"{target} is waited for as a one-shot but restarts"
            if is_one_shot(services[target]):
                assert condition == "service_completed_successfully", f"{name} must wait for one-shot {target}"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/", "$")):
                continue  # bind mount
            assert source in declared, f"{name} mounts undeclared volume {source}"


def test_gpu_workers_pin_one_gpu_per_process_and_share_it_within_a_memory_budget(compose: dict[str, Any]) -> None:
    """Each GPU runs one process of each pool (inference, training), one task at a time; the pools' memory caps
    on one GPU add up to at most the whole GPU."""
    gpu_workers = {n: s for n, s in compose["services"].items() if celery_queue(s) in ("inference", "training")}
    assert {celery_queue(s) for s in gpu_workers.values()} == {"inference", "training"}, "both pools"
    hostnames: list[str] = []
    budget: dict[tuple[str, str], float] = {}
    for name, service in gpu_workers.items():
        command = command_of(service)
        assert "--concurrency=1" in command, f"{name}: one process per GPU and pool"
        assert "--prefetch-multiplier=1" in command, name
        hostnames += [p for p in command if p.startswith("--hostname=")]
        assert service["environment"]["ML_DEVICE"] == "cuda", name
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1, f"{name}: exactly one device request"
        device = devices[0]
        assert device["driver"] == "nvidia", name
        assert "gpu" in device["capabilities"], name
        assert len(device["device_ids"]) == 1, f"{name}: one GPU per worker process"
        key = (device["device_ids"][0], celery_queue(service))
        assert key not in budget, f"two {key[1]} workers share GPU {key[0]}"
        fraction = str(service["environment"]["LVIT_CUDA_MEMORY_FRACTION"])
        budget[key] = float(fraction.strip("${}").split(":-")[-1])
        assert service.get("shm_size"), f"{name}: DataLoader workers need a larger /dev/shm"
        test = service["healthcheck"]["test"][-1]
        assert f"{celery_queue(service)}" in test and "inspect ping" in test, name
    for gpu in {g for g, _ in budget}:
        assert sum(v for (g, _), v in budget.items() if g == gpu) <= 1.0, f"GPU {gpu} is over-committed"
    assert len(set(hostnames)) == len(hostnames), f"worker node names collide: {hostnames}"


def test_main_compose_has_the_production_process_set() -> None:
    services = load_compose("compose.yaml")["services"]
    for required in ("postgres", "redis", "minio", "createbucket", "migrate", "web", "proxy"):
        assert required in services, required
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]

    migrate = services["migrate"]
    assert is_one_shot(migrate) and command_of(migrate)[-3:] == ["manage.py", "migrate", "--noinput"]
    assert "mc mb" in "\n".join(command_of(services["createbucket"])) or "mc mb" in str(
        services["createbucket"]["command"]
    )

    web = services["web"]
    assert command_of(web)[0] == "daphne" and "server.asgi:application" in command_of(web)
    # daphne must not believe X-Forwarded-For from anyone; Django reads it only from the proxy (docs/security.md)
    assert "--proxy-headers" not in command_of(web) and web["environment"]["LVIT_TRUSTED_PROXIES"]
    assert int(web["deploy"]["replicas"].strip("${}").split(":-")[-1]) >= 2, "several web replicas"
    assert web["healthcheck"]["test"] == ["CMD", "python", "deploy/healthcheck.py"]
    assert "/api/health/" in (DEPLOY / "healthcheck.py").read_text()
    assert "ports" not in web, "web is reached only through the proxy"

    queues = {celery_queue(s) for s in services.values()} - {None}
    assert queues == {"inference", "training", "default"}
    for name, service in services.items():
        if celery_queue(service) or name == "web":
            depends = service["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully", name
            assert depends["createbucket"]["condition"] == "service_completed_successfully", name
            assert service["environment"]["LVIT_DB_CONN_MAX_AGE"] == ("0" if name == "web" else "60"), name
    cpu = next(s for s in services.values() if celery_queue(s) == "default")
    assert "default@" in cpu["healthcheck"]["test"][-1] and "inspect ping" in cpu["healthcheck"]["test"][-1]


def test_app_processes_share_no_local_path(compose: dict[str, Any]) -> None:
    """Web and workers exchange files only through the object store: no volume of theirs holds app data."""
    for name, service in compose["services"].items():
        if service.get("build", {}).get("target") != "app":
            continue
        assert not service.get("volumes"), f"{name} mounts {service.get('volumes')}: files go through S3"
    assert env_example_active()["LVIT_STORAGE"] == "s3"


def test_compose_interpolations_are_documented_or_defaulted() -> None:
    documented = env_example()
    for name in COMPOSE_FILES:
        text = (DEPLOY / name).read_text().replace("$$", "")
        for match in re.finditer(r"\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}", text):
            var, modifier = match.group(1), match.group(2) or ""
            assert var in documented or modifier.startswith((":-", "-")), f"{name}: ${{{var}}} undocumented"


def settings_env_vars() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "server").rglob("*.py"):
        names |= set(ENV_READERS.findall(path.read_text()))
    names.add("SECRET_KEY")  # read through os.environ in server/config.py's secret_key()
    return names - DEV_ONLY_VARS


def test_every_variable_the_server_reads_is_documented_in_env_example() -> None:
    documented = env_example()
    required = settings_env_vars()
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "LVIT_STORAGE"} <= required
    missing = sorted(required - documented.keys())
    assert not missing, f"read by server/ but not documented in deploy/.env.example: {missing}"
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # boto3 reads these for django-storages
        assert var in env_example_active(), var


def test_env_example_is_a_consistent_production_configuration() -> None:
    env = env_example_active()
    assert env["DEBUG"] == "0"
    for flag in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "LVIT_BEHIND_TLS_PROXY"):
        assert env[flag] == "1", flag
    assert int(env["SECURE_HSTS_SECONDS"]) >= 31536000
    assert "CHANGE_ME" in env["SECRET_KEY"] and len(env["SECRET_KEY"]) >= 50
    assert env["LVIT_STORAGE"] == "s3" and env["LVIT_S3_BUCKET"] and env["LVIT_S3_ENDPOINT_URL"]
    assert all(origin.startswith("https://") for origin in env["CSRF_TRUSTED_ORIGINS"].split(","))
    # The URL the app uses must match what the postgres service is created with.
    expected = f"postgres://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/{env['POSTGRES_DB']}"
    assert env["DATABASE_URL"] == expected
    assert env["REDIS_URL"].startswith(f"redis://:{env['REDIS_PASSWORD']}@redis:6379/")


def test_dockerfile_installs_torch_first_runs_as_non_root_and_collects_static() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS app$", text, re.M)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    torch_at = text.index("grep -E '^torch=='")
    assert torch_at < text.index("pip install -r requirements.txt"), "torch must be installed before the rest"
    assert "cmp /tmp/torch-before /tmp/torch-after" in text, "the build must fail if torch was replaced"
    assert "collectstatic --noinput" in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] != "root" and users[-1] != "0"
    assert "FROM nginx" in text and "AS proxy" in text
    requirements = (REPO / "requirements.txt").read_text()
    assert re.search(r"^torch==\d", requirements, re.M), "requirements.txt must pin torch for the image build"
    for copied in re.findall(r"^COPY (?!--from)(.+) /app/", text, re.M):
        for source in copied.split():
            assert (REPO / source).exists(), f"Dockerfile copies missing {source}"


def test_proxy_config_matches_the_app() -> None:
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "server web:8000" in nginx
    assert "proxy_set_header X-Forwarded-Proto $scheme" in nginx, "Django trusts this header behind the proxy"
    assert "$proxy_add_x_forwarded_for" not in nginx, "the client's own X-Forwarded-For must be overwritten"
    assert re.search(r"location /admin/ \{[^}]*deny all;", nginx), "/admin/ is not for the public port"
    assert "Upgrade $http_upgrade" in nginx, "websockets must pass"
    limit = re.search(r"client_max_body_size (\d+)m;", nginx)
    assert limit and int(limit.group(1)) * 1024 * 1024 >= 200 * 1024 * 1024
    assert "listen 443 ssl" in nginx and "return 301 https://" in nginx


def compose_binary() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_docker_compose_config_accepts_the_files(name: str, tmp_path: Path) -> None:
    binary = compose_binary()
    if binary is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed; the structural tests above ran")
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for compose_file in COMPOSE_FILES:
        shutil.copy(DEPLOY / compose_file, deploy / compose_file)
    shutil.copy(DEPLOY / ".env.example", deploy / ".env")
    result = subprocess.run(
        [*binary, "-f", str(deploy / name), "config"], cwd=deploy, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == set(load_compose(name)["services"])


@pytest.mark.parametrize("pool", ["inference", "training"])
def test_systemd_worker_units_pin_one_gpu_per_instance(pool: str) -> None:
    import configparser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # keys are case-sensitive
    text = (DEPLOY / "systemd" / f"lvit-{pool}-worker@.service").read_text().replace("\\\n", " ")
    unit.read_string(text)
    service = unit["Service"]
    # configparser keeps only the last of repeated keys; read every Environment= line instead.
    environment = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("Environment=")]
    assert "CUDA_VISIBLE_DEVICES=%i" in environment and "ML_DEVICE=cuda" in environment
    assert any(e.startswith("LVIT_CUDA_MEMORY_FRACTION=") for e in environment)
    command = service["ExecStart"].split()
    for flag in (f"--queues={pool}", "--concurrency=1", "--prefetch-multiplier=1", f"--hostname={pool}%i@%%h"):
        assert flag in command, flag
    assert service["User"] != "root"
