"""The production process set, started on this machine, driven only through the HTTP API.

What runs, as in ``deploy/compose.yaml`` but without containers:

- the ``migrate`` one-shot, then daphne (the web), a Celery worker per queue (``inference``, ``training``, ``default``),
  each with its own working directory and its own local state folder (``LVIT_VAR_DIR``);
- real PostgreSQL (a scratch database, dropped afterwards) and real Redis (a dedicated database number);
- files through Django's storage API to a real S3 endpoint (moto's server), so no two processes share a local path;
- the production settings of ``deploy/.env.example`` (DEBUG off, SSL redirect, secure cookies, HSTS, a proxy that
  sets ``X-Forwarded-Proto``), with the requests carrying the headers nginx adds.

The model is a real, untrained LViT-T at 224x224, registered through the workers' model-version service: honest
for a plumbing test (the proposal is whatever an untrained network predicts).
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import subprocess
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import shared_data_dir
from tests.deploy.conftest import PYTHON, REPO, S3Endpoint, free_port, production_env, stop, wait_for_port
from tests.deploy.wsclient import WebSocket

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_DB = 12  # dedicated to this test; the rest of the suite uses 9
HOST = "lvit.example.org"  # the first ALLOWED_HOSTS entry of deploy/.env.example
PROXY_HEADERS = {"Host": HOST, "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
REPORT = "One round lesion in the upper left area."

REGISTER_MODEL = """
import json, sys, tempfile
from pathlib import Path
import django
django.setup()
import torch
from ml.config import LViTConfig
from ml.models import build_model
from ml.predict import save_checkpoint
from server.studio.models import ModelStatus, ModelVersion, Project
from server.studio.services.registry import model_version_create

project = Project.objects.get(pk=int(sys.argv[1]))
torch.manual_seed(0)
cfg = LViTConfig()  # LViT-T, 224x224, untrained
with tempfile.TemporaryDirectory() as tmp:
    path = save_checkpoint(Path(tmp) / "untrained.pt", build_model(cfg), cfg)
    mv = model_version_create(project=project, checkpoint=path, config={"model": cfg.to_dict()}, metrics={},
                              parent=None, training_job=None, name="untrained LViT-T")
ModelVersion.objects.filter(pk=mv.pk).update(status=ModelStatus.ACTIVE)
print(json.dumps({"id": mv.pk, "checkpoint": mv.checkpoint.name}))
"""


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


@dataclass
class Process:
    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@dataclass
class Deployment:
    base_urls: list[str]  # one per web replica
    env: dict[str, str]
    root: Path
    bucket: str
    s3: S3Endpoint
    processes: dict[str, Process] = field(default_factory=dict)
    credentials: tuple[str, str] | None = None  # the administrator the `ops` fixture created
    staff: tuple[str, str] | None = None  # a staff user for the health details
    health_token: str = ""

    def url(self, path: str, replica: int = 0) -> str:
        return f"{self.base_urls[replica]}{path}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (rc={p.proc.poll()}):\n{p.tail()}" for p in self.processes.values())

    def one_shot(self, name: str, args: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """A process that runs to completion (like the compose one-shots), in its own directory."""
        workdir = self.root / name
        workdir.mkdir(exist_ok=True)
        env = {**self.env, "LVIT_VAR_DIR": str(workdir / "var")}
        result = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    def start(self, name: str, args: list[str]) -> Process:
        workdir = self.root / name
        workdir.mkdir(exist_ok=True)
        env = {
            **self.env,
            "LVIT_VAR_DIR": str(workdir / "var"),
            "LVIT_CHECKPOINT_CACHE_DIR": str(workdir / "checkpoints"),
        }
        log = workdir / "process.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        process = Process(name, proc, log)
        self.processes[name] = process
        return process


def create_database(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", **PG)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def drop_database(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", **PG)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def flush_redis_db() -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    client.close()


def wait_healthy(dep: Deployment, timeout: float) -> dict[str, Any]:
    """Until ``/api/health/`` answers 200 with both workers listed."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for process in dep.processes.values():
            if process.proc.poll() is not None:
                raise AssertionError(f"{process.name} exited early:\n{dep.logs()}")
        try:
            if not getattr(dep, "health_token", None):  # health details (worker names) are for staff only
                login = requests.post(
                    dep.url("/api/auth/token/"), json={"username": dep.staff[0], "password": dep.staff[1]},
                    headers=PROXY_HEADERS, timeout=5,
                )  # fmt: skip
                dep.health_token = login.json()["token"]
            response = requests.get(
                dep.url("/api/health/"), headers={**PROXY_HEADERS, "Authorization": f"Token {dep.health_token}"},
                timeout=5,
            )  # fmt: skip
            body = response.json()
            detail = body["checks"]["workers"]["detail"]
            if response.status_code == 200 and all(f"{n}@" in detail for n in ("inference0", "training0", "default")):
                return body
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(1)
    raise AssertionError(f"not healthy after {timeout}s: {body}\n{dep.logs()}")


@pytest.fixture(scope="module")
def deployment(s3_endpoint: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not reachable(PG["host"], PG["port"]) or not reachable("127.0.0.1", 6379):
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (.ci/run starts both)")
    root = tmp_path_factory.mktemp("deployment")
    db_name = f"lvit_deploy_{uuid.uuid4().hex[:10]}"
    bucket = f"lvit-deploy-{uuid.uuid4().hex[:10]}"
    s3_endpoint.client().create_bucket(Bucket=bucket)
    create_database(db_name)
    flush_redis_db()

    env = production_env(root / "unused-var")
    env.update(s3_endpoint.env(bucket))
    env.update(
        {
            "DATABASE_URL": f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{db_name}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
            "ML_DEVICE": "cpu",  # the pools' workers run on CPU here; on a GPU host they are `cuda`
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "LVIT_JOB_HEARTBEAT_S": "2",
            "LVIT_JOB_STALE_AFTER_S": "60",
        }
    )
    ports = [free_port(), free_port()]
    dep = Deployment(
        base_urls=[f"http://127.0.0.1:{p}" for p in ports], env=env, root=root, bucket=bucket, s3=s3_endpoint
    )
    try:
        dep.one_shot("migrate", [PYTHON, str(REPO / "manage.py"), "migrate", "--noinput"])
        dep.staff = ("monitor", "monitor-" + uuid.uuid4().hex)
        dep.one_shot(
            "create-monitor",
            [PYTHON, str(REPO / "manage.py"), "shell", "-c",
             "from django.contrib.auth import get_user_model; "
             f"get_user_model().objects.create_user('monitor', password='{dep.staff[1]}', is_staff=True)"],
        )  # fmt: skip
        for replica, port in enumerate(ports):  # two web replicas, as behind the proxy
            dep.start(
                "web" if replica == 0 else f"web-{replica + 1}",
                [PYTHON, "-m", "daphne", "--bind", "127.0.0.1", "--port", str(port), "--proxy-headers",
                 "server.asgi:application"],
            )  # fmt: skip
        for queue, node in (("inference", "inference0"), ("training", "training0"), ("default", "default")):
            dep.start(
                f"worker-{queue}",
                [PYTHON, "-m", "celery", "--app=server", "worker", f"--queues={queue}", f"--hostname={node}@%h",
                 "--concurrency=1", "--prefetch-multiplier=1", "--loglevel=INFO"],
            )  # fmt: skip
        wait_for_port("127.0.0.1", ports[0], 90, dep.processes["web"].proc)
        wait_for_port("127.0.0.1", ports[1], 90, dep.processes["web-2"].proc)
        wait_healthy(dep, 120)
        yield dep
    finally:
        for process in dep.processes.values():
            stop(process.proc, timeout=20)
        flush_redis_db()
        drop_database(db_name)
        for checkpoint in root.rglob("*.pt"):  # ~0.1-0.35 GB each; the logs stay for a failed run's post-mortem
            checkpoint.unlink()


def api(dep: Deployment, token: str | None = None) -> requests.Session:
    session = requests.Session()
    session.headers.update(PROXY_HEADERS)
    if token:
        session.headers["Authorization"] = f"Token {token}"
    return session


@pytest.fixture(scope="module")
def ops(deployment: Deployment) -> requests.Session:
    """An administrator created by a one-shot (as `manage.py createsuperuser` would), using token auth."""
    dep = deployment
    password = "ops-" + uuid.uuid4().hex
    dep.one_shot(
        "createsuperuser",
        [PYTHON, str(REPO / "manage.py"), "shell", "-c",
         "from django.contrib.auth import get_user_model; "
         f"get_user_model().objects.create_superuser('ops', 'ops@example.org', '{password}')"],
    )  # fmt: skip
    response = api(dep).post(dep.url("/api/auth/token/"), json={"username": "ops", "password": password})
    assert response.status_code == 200, response.text
    dep.credentials = ("ops", password)
    return api(dep, response.json()["token"])


def create_project(dep: Deployment, client: requests.Session, name: str) -> int:
    project = client.post(dep.url("/api/projects/"), json={"name": name, "template": "free-text"})
    assert project.status_code == 201, project.text
    return project.json()["id"]


def upload_case(dep: Deployment, client: requests.Session, project_id: int) -> tuple[int, tuple[int, int]]:
    data, name, size = scan_file()
    upload = client.post(
        dep.url(f"/api/projects/{project_id}/cases/"),
        files={"image": (name, data, "application/octet-stream")},
        data={"report": REPORT},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text
    return upload.json()[0]["id"], size


def wait_proposal(
    dep: Deployment, client: requests.Session, case_id: int, timeout: float = 120, replica: int = 0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        masks = client.get(dep.url(f"/api/cases/{case_id}/masks/", replica=replica), timeout=10)
        assert masks.status_code == 200, masks.text
        proposal = next((m for m in masks.json() if m["kind"] == "proposal"), None)
        if proposal is not None:
            return proposal
        time.sleep(1)
    raise AssertionError(f"no proposal for case {case_id} after {timeout} s\n{dep.logs()}")


def test_health_checks_pass_against_the_running_processes(deployment: Deployment) -> None:
    headers = {**PROXY_HEADERS, "Authorization": f"Token {deployment.health_token}"}
    body = requests.get(deployment.url("/api/health/"), headers=headers, timeout=10).json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["detail"] == "postgresql"

    # The web container's health check, exactly as compose runs it (with --require-workers: strict).
    check = subprocess.run(
        [PYTHON, str(REPO / "deploy" / "healthcheck.py"), "--require-workers", "--url", deployment.url("/api/health/")],
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "database=ok" in check.stdout and "workers=ok" in check.stdout

    # The workers' health check: each node answers `celery inspect ping` by its own name.
    host = socket.gethostname()
    for node in ("inference0", "training0", "default"):
        ping = subprocess.run(
            [PYTHON, "-m", "celery", "--app=server", "inspect", "ping", "--destination", f"{node}@{host}",
             "--timeout", "10"],
            cwd=deployment.root,
            env={**deployment.env, "LVIT_VAR_DIR": str(deployment.root / "ping-var")},
            capture_output=True,
            text=True,
            timeout=90,
        )  # fmt: skip
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert f"{node}@{host}: OK" in ping.stdout

    # The production security settings are live: plain HTTP is redirected, unknown hosts refused.
    plain = requests.get(deployment.url("/api/health/"), headers={"Host": HOST}, allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"] == f"https://{HOST}/api/health/"
    assert (
        requests.get(deployment.url("/api/health/"), headers={**PROXY_HEADERS, "Host": "evil.test"}).status_code == 400
    )
    secure = requests.get(deployment.url("/api/health/"), headers=PROXY_HEADERS, timeout=10)
    assert "max-age=31536000" in secure.headers["Strict-Transport-Security"]


def scan_file() -> tuple[bytes, str, tuple[int, int]]:
    """A real MoNuSeg tile (the original TIFF, as a user would upload it) when the shared data is present, else a
    synthetic gray scan as PNG. Returns the file's bytes, its name and the image size (width, height)."""
    folder = shared_data_dir() / "monuseg" / "Test_Folder" / "img"
    files = sorted([*folder.glob("*.tif"), *folder.glob("*.png")]) if folder.is_dir() else []
    if files:
        with Image.open(files[0]) as image:
            size = image.size
        return files[0].read_bytes(), files[0].name, size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    disc = (yy - 100) ** 2 + (xx - 90) ** 2 <= 40**2
    image = Image.fromarray((rng.normal(60, 15, (256, 256)) + 120 * disc).clip(0, 255).astype(np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue(), "synthetic.png", image.size


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def bucket_keys(dep: Deployment) -> list[str]:
    paginator = dep.s3.client().get_paginator("list_objects_v2")
    return [o["Key"] for page in paginator.paginate(Bucket=dep.bucket) for o in page.get("Contents", [])]


def test_upload_proposal_and_export_through_the_http_api(deployment: Deployment, ops: requests.Session) -> None:
    dep, client = deployment, ops
    project_id = create_project(dep, client, "deploy check")
    model = json.loads(
        dep.one_shot("register-model", [PYTHON, "-c", REGISTER_MODEL, str(project_id)]).stdout.strip().splitlines()[-1]
    )

    # Uploaded through one web replica; everything after is read through the other (no shared local state).
    case_id, size = upload_case(dep, client, project_id)
    proposal = wait_proposal(dep, client, case_id, replica=1)
    assert proposal["report_text"] == REPORT
    assert proposal["model_version"] == 1

    png = client.get(dep.url(proposal["png_url"], replica=1), timeout=30)
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    mask = Image.open(io.BytesIO(png.content))
    assert mask.size == size, "the proposal is at the scan's own resolution"

    # The proposal ran on the inference pool's worker; the training and default workers never saw it.
    # (the start-up banner lists every registered task; "Task <name>[<id>] received" is a delivery)
    assert "Task gpu.propose_mask[" in dep.processes["worker-inference"].tail(200_000)
    assert "Task gpu.propose_mask[" not in dep.processes["worker-training"].tail(200_000)
    assert "Task gpu.propose_mask[" not in dep.processes["worker-default"].tail(200_000)

    accepted = client.post(dep.url(f"/api/cases/{case_id}/accept/", replica=1), json={}, timeout=30)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["kind"] == "accepted"

    export = client.get(dep.url(f"/api/projects/{project_id}/export/?format=lvit", replica=1), timeout=120)
    assert export.status_code == 200, export.text[:2000]
    assert export.headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(export.content))
    names = archive.namelist()
    images = [n for n in names if "_Folder/img/" in n]
    labels = [n for n in names if "_Folder/labelcol/" in n]
    texts = [n for n in names if n.endswith(("_text.csv", "_text.xlsx"))]
    assert len(images) == 1 and len(labels) == 1 and len(texts) == 1, names
    assert Image.open(io.BytesIO(archive.read(images[0]))).size == size
    exported_mask = np.array(Image.open(io.BytesIO(archive.read(labels[0]))))
    assert exported_mask.shape[:2] == (size[1], size[0])
    if texts[0].endswith(".csv"):
        rows = list(csv.reader(io.StringIO(archive.read(texts[0]).decode("utf-8"))))
        assert rows[1][1] == REPORT
    else:
        import openpyxl

        sheet = openpyxl.load_workbook(io.BytesIO(archive.read(texts[0]))).active
        assert [c.value for c in next(sheet.iter_rows(min_row=2, max_row=2))][1] == REPORT

    # A web replica stays small (it never loads a model): docs/deploy.md sizes it at 0.5-1 GiB.
    web_rss = rss_mib(dep.processes["web"].proc.pid)
    print(f"web (daphne) resident memory after upload, proposal and export: {web_rss:.0f} MiB")
    assert web_rss < 1024
    gpu_pid = dep.processes["worker-inference"].proc.pid
    children = Path(f"/proc/{gpu_pid}/task/{gpu_pid}/children").read_text().split()
    worker_rss = rss_mib(gpu_pid) + sum(rss_mib(int(c)) for c in children)
    print(f"inference worker (main + pool process, LViT-T loaded, on CPU): {worker_rss:.0f} MiB")

    # Every file is in the bucket, none on a process's local disk.
    keys = bucket_keys(dep)
    sizes = {o["Key"]: o["Size"] for o in dep.s3.client().list_objects_v2(Bucket=dep.bucket)["Contents"]}
    for key, nbytes in sorted(sizes.items()):
        print(f"stored {key}: {nbytes / 1024:.0f} KiB")
    assert model["checkpoint"] in keys
    assert len(keys) >= 3, keys  # checkpoint, scan, proposal mask (+ accepted mask, original)
    for process_dir in dep.root.iterdir():
        media = process_dir / "var" / "media"
        assert not media.exists() or not any(media.rglob("*")), f"{process_dir.name} wrote local media files"


def test_torchrun_checkpoint_is_registered_activated_and_serves_proposals(
    deployment: Deployment, ops: requests.Session, shared_data: Path
) -> None:
    """docs/deploy.md "Multi-GPU training with torchrun", on CPU: two DDP processes (gloo instead of NCCL) train
    on an LViT-layout folder, deploy/register_checkpoint.py stores the result, the API activates it, and the gpu
    worker serves the next proposal with it."""
    dep, client = deployment, ops
    project_id = create_project(dep, client, "torchrun check")
    trainer_dir = dep.root / "trainer"
    trainer_dir.mkdir()
    run = subprocess.run(
        [str(Path(PYTHON).parent / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "ml", "train",
         "--data", str(shared_data / "monuseg"), "--out", str(trainer_dir / "run"), "--epochs", "1", "--limit", "4",
         "--batch-size", "2", "--img-size", "32", "--device", "cpu", "--quiet"],
        cwd=trainer_dir,
        env={**dep.env, "LVIT_VAR_DIR": str(trainer_dir / "var"), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "world size 2" in run.stdout
    checkpoint = trainer_dir / "run" / "best.pt"
    assert checkpoint.is_file()

    registered = dep.one_shot(
        "register-checkpoint",
        [PYTHON, str(REPO / "deploy" / "register_checkpoint.py"), "--project", str(project_id),
         "--checkpoint", str(checkpoint), "--name", "torchrun 2x"],
    )  # fmt: skip
    version = json.loads(registered.stdout.strip().splitlines()[-1])
    assert version["status"] == "candidate" and version["name"] == "torchrun 2x"
    assert 0.0 <= version["metrics"]["val_dice"] <= 1.0

    activated = client.post(dep.url(f"/api/models/{version['id']}/activate/"), timeout=30)
    assert activated.status_code == 200, activated.text
    assert activated.json()["status"] == "active"
    assert activated.json()["config"]["model"]["img_size"] == 32

    case_id, size = upload_case(dep, client, project_id)
    proposal = wait_proposal(dep, client, case_id)
    assert proposal["model_version"] == version["number"]
    png = client.get(dep.url(proposal["png_url"]), timeout=30)
    assert Image.open(io.BytesIO(png.content)).size == size


def proxy_config(dep: Deployment, workdir: Path, static_root: Path, http_port: int, https_port: int) -> Path:
    """deploy/nginx.conf with only this machine's addresses, ports and paths substituted."""
    text = (REPO / "deploy" / "nginx.conf").read_text()
    ports = [url.rsplit(":", 1)[1] for url in dep.base_urls]
    substitutions = {
        "server web:8000 max_fails=3 fail_timeout=10s;": " ".join(
            f"server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;" for port in ports
        ),
        "listen 80 default_server;": f"listen 127.0.0.1:{http_port} default_server;",
        "listen 443 ssl http2 default_server;": f"listen 127.0.0.1:{https_port} ssl http2 default_server;",
        "/etc/nginx/certs/": f"{workdir}/certs/",
        "alias /usr/share/lvit/static/;": f"alias {static_root}/;",
        "pid /tmp/nginx.pid;": f"pid {workdir}/nginx.pid;",
        "access_log /dev/stdout;": f"access_log {workdir}/access.log;",
        "error_log /dev/stderr warn;": f"error_log {workdir}/error.log warn;",
    }
    for old, new in substitutions.items():
        assert old in text, f"deploy/nginx.conf no longer contains {old!r}; update this test"
        text = text.replace(old, new)
    # The test's files live in root-only temporary folders; the image's nginx reads files it owns.
    config = workdir / "nginx.conf"
    config.write_text("user root;\n" + text)
    return config


def test_nginx_proxy_terminates_tls_serves_static_and_balances_the_replicas(
    deployment: Deployment, ops: requests.Session
) -> None:
    """deploy/nginx.conf itself (distribution nginx here, nginx:1.27 in the image) in front of the two replicas:
    TLS, static files, round robin, a browser sign-in (CSRF and secure cookies behind the proxy), and the project
    websocket through the proxy receiving the event the inference worker publishes through Redis."""
    import shutil

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); the compose proxy is checked structurally")
    dep = deployment
    workdir = dep.root / "proxy"
    (workdir / "certs").mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
         "-addext", f"subjectAltName=DNS:{HOST},IP:127.0.0.1",
         "-keyout", str(workdir / "certs" / "privkey.pem"), "-out", str(workdir / "certs" / "fullchain.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    dep.one_shot("collectstatic", [PYTHON, str(REPO / "manage.py"), "collectstatic", "--noinput", "--verbosity", "0"])
    static_root = dep.root / "collectstatic" / "var" / "static"
    http_port, https_port = free_port(), free_port()
    config = proxy_config(dep, workdir, static_root, http_port, https_port)
    check = subprocess.run([nginx, "-t", "-c", str(config)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr

    proc = subprocess.Popen([nginx, "-c", str(config), "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        wait_for_port("127.0.0.1", https_port, 30, proc)
        https = f"https://127.0.0.1:{https_port}"
        client = requests.Session()
        client.trust_env = False  # verify against this certificate only, whatever CA bundle the environment names
        client.verify = str(workdir / "certs" / "fullchain.pem")
        client.headers["Host"] = HOST
        # HTTPS through the proxy: nginx says so in X-Forwarded-Proto, Django trusts it (no redirect) and adds
        # HSTS. The client sends no forwarding header of its own, and a forged one is overwritten.
        for forged in ({}, {"X-Forwarded-Proto": "http"}):
            health = client.get(f"{https}/api/health/", headers=forged, allow_redirects=False, timeout=15)
            assert health.status_code == 200, health.text
            assert health.json()["status"] == "ok"
            assert "max-age=31536000" in health.headers["Strict-Transport-Security"]

        # Requests are spread over both replicas (round robin).
        before = [len(dep.processes[name].tail(10**7).splitlines()) for name in ("web", "web-2")]
        for _ in range(6):
            assert client.get(f"{https}/api/projects/", timeout=30).status_code in (401, 403)
        after = [len(dep.processes[name].tail(10**7).splitlines()) for name in ("web", "web-2")]
        assert after[0] > before[0] and after[1] > before[1], (before, after)

        # Static files come from the proxy (the replicas run with LVIT_SERVE_STATIC=0).
        asset = next(static_root.rglob("*.js"))
        url_path = "/static/" + asset.relative_to(static_root).as_posix()
        static = client.get(f"{https}{url_path}", timeout=15)
        assert static.status_code == 200 and static.content == asset.read_bytes()
        assert "javascript" in static.headers["Content-Type"]
        assert url_path not in dep.processes["web"].tail(10**7) + dep.processes["web-2"].tail(10**7)

        # A browser signs in through the proxy: CSRF (Referer checked on HTTPS) and Secure cookies work.
        username, password = dep.credentials or ("", "")
        form = client.get(f"{https}/login/", timeout=15)
        assert form.status_code == 200, form.text[:500]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token, "no CSRF token in the sign-in form"
        signed_in = client.post(
            f"{https}/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": f"https://{HOST}/login/"},
            allow_redirects=False,
            timeout=15,
        )
        assert signed_in.status_code == 302, signed_in.text[:1000]
        session_cookie = next(c for c in client.cookies if c.name == "sessionid")
        assert session_cookie.secure, "the session cookie must be Secure"

        # The project websocket through the proxy (upgrade passed on), then a proposal made by the inference worker
        # arrives on it through the Redis channel layer, whichever replica holds the socket.
        project_id = create_project(dep, ops, "websocket check")
        socket_ = WebSocket.connect(
            "127.0.0.1",
            https_port,
            f"/ws/projects/{project_id}/",
            server_name=HOST,
            cafile=str(workdir / "certs" / "fullchain.pem"),
            headers={"Origin": f"https://{HOST}", "Cookie": f"sessionid={session_cookie.value}"},
        )
        try:
            assert socket_.receive_json(timeout=20) == {"type": "hello", "project": project_id}
            dep.one_shot("register-model-ws", [PYTHON, "-c", REGISTER_MODEL, str(project_id)])
            case_id, _ = upload_case(dep, ops, project_id)
            deadline = time.monotonic() + 120
            event = None
            while time.monotonic() < deadline:
                message = socket_.receive_json(timeout=max(1.0, deadline - time.monotonic()))
                assert message is not None, f"websocket closed with {socket_.close_code}"
                if message.get("event") == "proposal.created":
                    event = message
                    break
            assert event is not None and event["data"]["case"] == case_id, f"no proposal event\n{dep.logs()}"
        finally:
            socket_.close()

        # Plain HTTP never reaches Django: a probe for the container health check, a redirect for the rest.
        plain = requests.get(
            f"http://127.0.0.1:{http_port}/api/health/", headers={"Host": HOST}, allow_redirects=False, timeout=10
        )
        assert plain.status_code == 301 and plain.headers["Location"] == f"https://{HOST}/api/health/"
        probe = requests.get(f"http://127.0.0.1:{http_port}/healthz", timeout=10)
        assert probe.status_code == 200 and probe.text == "ok\n"
    finally:
        stop(proc)
