"""Server benchmarks on PostgreSQL: worklist and case-list p95 latency with 10,000 cases; streaming export of
250 and 1,000 cases (seconds, RSS growth: it must not grow with the case count).

Creates a scratch database, migrates it, fills it with bulk_create, measures, and drops it again:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/1 \\
        .venv/bin/python bench/bench_server.py [--cases 10000] [--append docs/results.md]

DATABASE_URL names the server (its database is only used to create and drop the scratch one). Each export is
measured in a fresh child process, so one measurement's memory does not hide in the other's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from _db import psql  # bench/ is sys.path[0] when a script here runs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SCRATCH_DB = "lvit_bench_server"


def _admin_url(url: str, db: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=f"/{db}"))


def _setup_django(db_url: str, media: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ["LVIT_MEDIA_ROOT"] = media
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
    import django

    django.setup()


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples RSS every few milliseconds in a thread; ``peak - start`` is the growth during the block."""

    def __init__(self) -> None:
        self.start = self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18] if len(samples) >= 20 else max(samples)


def _users(n: int):
    from django.contrib.auth import get_user_model

    User = get_user_model()
    return [User.objects.get_or_create(username=f"bench{i}")[0] for i in range(n)]


def populate(n_cases: int, *, name: str, with_files: bool) -> int:
    """A project with ``n_cases`` cases (bulk_create), reports, a proposal or accepted mask on most of them."""
    import numpy as np
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from server.core.models import Membership, Role
    from server.studio import imaging, services
    from server.studio.demo import phantom
    from server.studio.models import Case, CaseState, MaskKind, MaskVersion, Report

    owner = _users(1)[0]
    project = services.project_create(user=owner, name=name, template="lung-infection")
    phantoms = [phantom(s, size=256) for s in range(16)]
    shared_image = default_storage.save("bench/shared.png", ContentFile(imaging.encode_png(phantoms[0].image)))
    shared_mask = default_storage.save("bench/shared-mask.png", ContentFile(imaging.encode_mask(phantoms[0].mask)))
    rng = np.random.default_rng(0)
    states = [CaseState.UNLABELED, CaseState.PROPOSED, CaseState.IN_REVIEW, CaseState.LABELED]
    batch = 2000
    for start in range(0, n_cases, batch):
        cases = []
        for i in range(start, min(n_cases, start + batch)):
            p = phantoms[i % len(phantoms)]
            if with_files:
                image = default_storage.save(f"bench/{name}/{i}.png", ContentFile(imaging.encode_png(p.image)))
            else:
                image = shared_image
            cases.append(
                Case(
                    project=project,
                    name=f"bench-{i:06d}.png",
                    image=image,
                    original=image,
                    original_name=f"bench-{i:06d}.png",
                    original_format="png",
                    width=256,
                    height=256,
                    split=("train", "train", "train", "val", "test")[i % 5],
                    state=CaseState.LABELED if with_files else states[i % 4],
                    al_score=float(rng.random()),
                    inconsistency=float(rng.random()) if i % 2 else None,
                )
            )
        Case.objects.bulk_create(cases, batch_size=1000)
    from server.studio import reports as rpt

    tmpl = rpt.Template.of(project.template)
    reports, masks = [], []
    for i, case in enumerate(Case.objects.filter(project=project).order_by("id").iterator()):
        p = phantoms[i % len(phantoms)]
        fields, text = rpt.render(tmpl, p.fields)
        reports.append(Report(case=case, version=1, fields=fields, text=text))
        if with_files:
            png = default_storage.save(f"bench/{name}/m{i}.png", ContentFile(imaging.encode_mask(p.mask)))
            masks.append(
                MaskVersion(case=case, version=1, kind=MaskKind.ACCEPTED, png=png, foreground=int(p.mask.sum()))
            )
        elif case.state != CaseState.UNLABELED:
            kind = MaskKind.ACCEPTED if case.state == CaseState.LABELED else MaskKind.PROPOSAL
            masks.append(MaskVersion(case=case, version=1, kind=kind, png=shared_mask, foreground=100))
    Report.objects.bulk_create(reports, batch_size=2000)
    MaskVersion.objects.bulk_create(masks, batch_size=2000)
    from django.db import connection

    with connection.cursor() as cur:  # point each case at its report and mask (one statement each)
        cur.execute(
            "UPDATE studio_case c SET report_id = r.id FROM studio_report r WHERE r.case_id = c.id AND c.project_id = %s",
            [project.pk],
        )
        cur.execute(
            "UPDATE studio_case c SET head_mask_id = m.id FROM studio_maskversion m "
            "WHERE m.case_id = c.id AND c.project_id = %s",
            [project.pk],
        )
        cur.execute("ANALYZE")
    for u in _users(50)[1:]:
        Membership.objects.get_or_create(project=project, user=u, defaults={"role": Role.ANNOTATOR})
    return project.pk


def bench_latency(project_id: int, *, n: int = 200) -> list[tuple[str, float, float]]:
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    from server.studio.models import Case, Project
    from server.studio.services.cases import worklist_next

    project = Project.objects.get(pk=project_id)
    users = _users(50)
    rows = []
    for strategy in ("uncertainty", "inconsistency", "random"):
        times = []
        for i in range(n):
            user = users[i % len(users)]
            t0 = time.perf_counter()
            case = worklist_next(project=project, user=user, strategy=strategy)
            times.append(time.perf_counter() - t0)
            assert case is not None
            Case.objects.filter(pk=case.pk).update(assignee=None, assigned_at=None)
        rows.append((f"worklist_next service ({strategy})", statistics.median(times) * 1e3, p95(times) * 1e3))
    client = APIClient()
    _, token = AuthToken.objects.create(user=users[0])
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    base = f"/api/projects/{project_id}"
    queries = {
        "POST worklist/next?strategy=uncertainty": ("post", f"{base}/worklist/next/?strategy=uncertainty"),
        "GET cases/?limit=50": ("get", f"{base}/cases/?limit=50"),
        "GET cases/?state=unlabeled&ordering=-al_score": ("get", f"{base}/cases/?state=unlabeled&ordering=-al_score"),
        "GET cases/?split=train&offset=5000": ("get", f"{base}/cases/?split=train&offset=5000&limit=50"),
        "GET cases/?search=bench-0099": ("get", f"{base}/cases/?search=bench-0099"),
    }
    for label, (method, url) in queries.items():
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            response = getattr(client, method)(url)
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200, (url, response.status_code)
            if method == "post":
                Case.objects.filter(project_id=project_id, assignee__isnull=False).update(
                    assignee=None, assigned_at=None
                )
        rows.append((f"API {label}", statistics.median(times) * 1e3, p95(times) * 1e3))
    return rows


def export_child(project_id: int, fmt: str) -> dict:
    """Run in a fresh process: stream the export, count bytes, sample RSS."""
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username="bench0"))
    import gc

    # warm up: import the code paths (and zipfile/json/pycocotools) before the baseline is taken
    for _ in client.get(f"/api/projects/{project_id}/export/?format={fmt}&state=unlabeled").streaming_content:
        pass
    gc.collect()
    with PeakRss() as rss:
        t0 = time.perf_counter()
        response = client.get(f"/api/projects/{project_id}/export/?format={fmt}")
        size = 0
        for chunk in response.streaming_content:
            size += len(chunk)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bytes": size, "rss_growth": rss.peak - rss.start, "rss_start": rss.start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--append", type=Path, help="append the results to this markdown file")
    parser.add_argument("--export-child", nargs=2, metavar=("PROJECT_ID", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if args.export_child:
        _setup_django(base_url, os.environ["LVIT_MEDIA_ROOT"])
        print(json.dumps(export_child(int(args.export_child[0]), args.export_child[1])))
        return
    admin = _admin_url(base_url, urlparse(base_url).path.lstrip("/") or "postgres")
    scratch = _admin_url(base_url, SCRATCH_DB)
    psql(admin, f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
    psql(admin, f"CREATE DATABASE {SCRATCH_DB}")
    media = tempfile.mkdtemp(prefix="lvit-bench-media-")
    try:
        _setup_django(scratch, media)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        t0 = time.perf_counter()
        big = populate(args.cases, name="bench-latency", with_files=False)
        fill_s = time.perf_counter() - t0
        latency = bench_latency(big, n=args.requests)
        exports = {}
        for n in (250, 1000):
            pid = populate(n, name=f"bench-export-{n}", with_files=True)
            for fmt in ("lvit", "coco"):
                env = {**os.environ, "DATABASE_URL": scratch, "LVIT_MEDIA_ROOT": media}
                out = subprocess.run(
                    [sys.executable, __file__, "--export-child", str(pid), fmt],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                exports[(n, fmt)] = json.loads(out.stdout.strip().splitlines()[-1])
        from django.db import connections

        connections.close_all()
    finally:
        psql(admin, f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
        subprocess.run(["rm", "-rf", media], check=False)

    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}, "
        f"PostgreSQL scratch database; {args.cases} cases filled in {fill_s:.1f} s; {args.requests} requests each.",
        "",
        f"| operation ({args.cases:,} cases) | median ms | p95 ms |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {med:.1f} | {p:.1f} |" for label, med, p in latency]
    lines += [
        "",
        "| export (256x256 PNG + mask per case) | cases | seconds | output MiB | RSS growth MiB |",
        "|---|---|---|---|---|",
    ]
    for (n, fmt), r in sorted(exports.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {fmt} | {n} | {r['seconds']:.2f} | {r['bytes'] / 2**20:.1f} | {r['rss_growth'] / 2**20:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.append:
        with args.append.open("a") as fh:
            fh.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
