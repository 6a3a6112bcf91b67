"""Worker benchmarks with a real Celery worker process, PostgreSQL and Redis, on CPU:

1. upload -> proposal latency with a warm worker (median, p95) at 256x256 and 512x512 images;
2. batch-proposal throughput vs the raw model throughput (``ml.predict.Predictor`` on the same images, same
   process layout, measured in the same run right after) -> pipeline overhead in %;
3. EPI update throughput (first generation initialises P_0, the second is a real EMA step);
4. one retraining round on 100 accepted cases (80 train, 20 val; budget: epochs and input size below).

The model is a real LViT-T (224x224 input, MiniLM text features), randomly initialised for 1-3 (latency and
throughput do not depend on the weights). Creates and drops the scratch database ``lvit_bench_workers``:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/4 \\
        .venv/bin/python bench/bench_workers.py [--append docs/results.md]

DATABASE_URL names the server (its database only serves to create and drop the scratch one). REDIS_URL
should be a database number nothing else uses (the bench purges its Celery queues).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _db import drop_scratch, scratch_django  # bench/ is sys.path[0] when a script here runs
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SCRATCH_DB = "lvit_bench_workers"
SENTENCE = "One round lesion in the upper left area."


def synthetic(seed: int, size: int) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
    r = int(rng.integers(size // 10, size // 5))
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    image = (rng.normal(60, 15, (size, size)) + 120 * mask).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue(), mask


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait(predicate, timeout: float, what: str, log: Path):  # type: ignore[no-untyped-def]
    """Poll often (latencies are measured by it); on a timeout the error carries the worker log's tail."""
    from tests.support.polling import wait_for

    return wait_for(
        predicate, timeout, what, interval=0.01, context=lambda: log.read_text()[-4000:], error=RuntimeError
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-uploads", type=int, default=12, help="uploads per image size")
    parser.add_argument("--batch-cases", type=int, default=32)
    parser.add_argument("--train-cases", type=int, default=100)
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--train-img-size", type=int, default=224)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--append", type=Path, help="append the results under '## Workers' to this markdown file")
    args = parser.parse_args()

    base, tmp = scratch_django(
        SCRATCH_DB, prefix="lvit-bench-workers-", why="the worker process shares the database", LVIT_CELERY_EAGER="0"
    )
    from server.celery import app
    from tests.support.celery_worker import WorkerProcess

    app.control.purge()
    worker = WorkerProcess(os.environ.copy(), tmp, app="server", queues=("inference", "training", "default"))
    try:
        worker.start(timeout=120)
        assert worker.log_path is not None
        rows = run(args, tmp, worker.log_path)
    finally:
        worker.stop(timeout=60)
        drop_scratch(base, SCRATCH_DB)
    text = report(rows, args)
    print(text)
    if args.append:
        with args.append.open("a") as fh:
            fh.write("\n" + text)
    return 0


def run(args: argparse.Namespace, tmp: Path, log: Path) -> dict:
    import torch
    from django.contrib.auth import get_user_model

    from ml.config import LViTConfig
    from ml.models import build_model
    from ml.predict import Predictor, save_checkpoint
    from ml.text import TextEmbedder
    from server.jobs.models import Job, JobStatus
    from server.studio.models import Case, JobKind, MaskKind, MaskVersion, ModelStatus, ModelVersion
    from server.studio.services.cases import case_create, case_create_many, case_prepare
    from server.studio.services.jobs import project_job_create
    from server.studio.services.projects import project_create
    from server.studio.services.registry import model_version_create

    user = get_user_model().objects.create_user(username="bench", password="bench-123456789")
    project = project_create(user=user, name="bench", template="free-text")
    torch.manual_seed(0)
    cfg = LViTConfig(img_size=224)
    ckpt = save_checkpoint(tmp / "lvit-t.pt", build_model(cfg), cfg)
    mv = model_version_create(
        project=project, checkpoint=ckpt, config={"model": cfg.to_dict()}, metrics={}, parent=None, training_job=None
    )
    ModelVersion.objects.filter(pk=mv.pk).update(status=ModelStatus.ACTIVE)
    rows: dict = {"threads": torch.get_num_threads()}

    # 1. upload -> proposal latency (a warm worker: one upload first loads the model and the text model)
    def upload_and_wait(seed: int, size: int) -> float:
        data, _ = synthetic(seed, size)
        t0 = time.perf_counter()
        case = case_create(
            project=project, user=user, data=data, filename=f"u{seed}.png", split="test", report_text=SENTENCE
        )
        wait(lambda: MaskVersion.objects.filter(case=case, kind=MaskKind.PROPOSAL).exists(), 300, "a proposal", log)
        return time.perf_counter() - t0

    upload_and_wait(0, 256)
    latency = {}
    for size in (256, 512):
        times = [upload_and_wait(size * 1000 + i, size) for i in range(args.latency_uploads)]
        jobs = Job.objects.filter(kind=JobKind.PROPOSAL, case__name__startswith=f"u{size * 1000}")
        wait(lambda: not jobs.filter(finished_at__isnull=True).exists(), 60, "proposal jobs to finish", log)  # noqa: B023
        run_s = [(j.finished_at - j.started_at).total_seconds() for j in jobs]
        queue_s = [(j.started_at - j.created_at).total_seconds() for j in jobs]
        latency[size] = {
            "n": len(times),
            "median": statistics.median(times),
            "p95": pct(times, 0.95),
            "job_median": statistics.median(run_s),
            "queue_median": statistics.median(queue_s),
        }
    rows["latency"] = latency

    # 2. batch proposals vs the raw model on the same images
    size, n = 256, args.batch_cases
    items = [
        case_prepare(project=project, data=synthetic(10_000 + i, size)[0], filename=f"b{i}.png", report_text=SENTENCE)
        for i in range(n)
    ]
    cases = case_create_many(project=project, user=user, items=items, split="train", notify=False)

    def run_job(kind: str) -> Job:
        job = project_job_create(kind=kind, project=project, params={"splits": ["train"]})
        return wait(
            lambda: Job.objects.filter(pk=job.pk, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
            1800,
            kind,
            log,
        )

    images = [np.asarray(Image.open(Case.objects.get(pk=c.pk).image.open("rb")).convert("L")) for c in cases]
    embedder = TextEmbedder(length=cfg.text_len)
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    predictor.predict(images[:8], embedder.embed_many([SENTENCE] * len(images[:8])), batch_size=8)  # warm-up

    def raw_once() -> float:
        t0 = time.perf_counter()
        predictor.predict(images, embedder.embed_many([SENTENCE] * n), batch_size=8)
        return time.perf_counter() - t0

    # Interleaved (raw, job, raw, job, raw) and the minimum of each: the machine is shared, and the minimum is
    # the measurement least disturbed by other processes.
    raw_times, job_times, walls, timings = [raw_once()], [], [], []
    for _ in range(2):
        t0 = time.perf_counter()
        batch = run_job(JobKind.BATCH_PROPOSAL)
        walls.append(time.perf_counter() - t0)
        assert batch.status == JobStatus.SUCCEEDED, batch.message
        job_times.append((batch.finished_at - batch.started_at).total_seconds())
        timings.append(batch.result["timings"])
        raw_times.append(raw_once())
    best = min(range(len(job_times)), key=job_times.__getitem__)
    rows["batch"] = {
        "n": n,
        "size": size,
        "job_s": job_times[best],
        "wall_s": min(walls),
        "raw_s": min(raw_times),
        "timings": timings[best],
    }

    # 3. EPI: the first generation initialises P_0, the second is an EMA step
    epi = []
    for _ in range(2):
        job = run_job(JobKind.EPI_UPDATE)
        assert job.status == JobStatus.SUCCEEDED, job.message
        epi.append((job.finished_at - job.started_at).total_seconds())
        rows.setdefault("epi_timings", []).append(job.result["timings"])
    rows["epi"] = {"n": n, "size": size, "first_s": epi[0], "second_s": epi[1]}

    # 4. one retraining round on 100 accepted cases
    if not args.skip_training:
        rows["train"] = train_round(args, user, log)
    return rows


def add_labeled_cases(project, user, *, train: int, val: int) -> None:  # type: ignore[no-untyped-def]
    """``train`` + ``val`` synthetic 256 px cases with an accepted mask each (stored directly: no proposal jobs)."""
    from django.core.files.base import ContentFile

    from server.studio.models import Case, CaseState, MaskKind, MaskVersion
    from server.studio.services.cases import case_create_many, case_prepare

    for split, count, offset in (("train", train, 0), ("val", val, 50_000)):
        items, masks = [], []
        for i in range(count):
            data, mask = synthetic(20_000 + offset + i, 256)
            items.append(case_prepare(project=project, data=data, filename=f"t{offset + i}.png", report_text=SENTENCE))
            masks.append(mask)
        for case, mask in zip(
            case_create_many(project=project, user=user, items=items, split=split, notify=False), masks, strict=True
        ):
            buf = io.BytesIO()
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buf, format="PNG")
            mv = MaskVersion(case=case, version=1, kind=MaskKind.ACCEPTED, author=user, report_text=SENTENCE)
            mv.png.save("m.png", ContentFile(buf.getvalue()), save=False)
            mv.save()
            Case.objects.filter(pk=case.pk).update(state=CaseState.LABELED, head_mask=mv)


def train_round(args: argparse.Namespace, user, log: Path) -> dict:  # type: ignore[no-untyped-def]

    from server.jobs.models import Job, JobStatus
    from server.studio.models import ModelVersion
    from server.studio.services.projects import project_create
    from server.studio.services.training import training_job_create

    project = project_create(user=user, name="bench-train", template="free-text")
    n_val = args.train_cases // 5
    add_labeled_cases(project, user, train=args.train_cases - n_val, val=n_val)
    params = {
        "epochs": args.train_epochs,
        "img_size": args.train_img_size,
        "batch_size": 4,
        "mode": "labeled_only",
        "init": "scratch",
    }
    t0 = time.perf_counter()
    job = training_job_create(project=project, params=params, actor=user)
    job = wait(
        lambda: Job.objects.filter(pk=job.pk, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
        6 * 3600,
        "training",
        log,
    )
    wall = time.perf_counter() - t0
    assert job.status == JobStatus.SUCCEEDED, job.message
    mv = ModelVersion.objects.get(training_job=job)
    return {
        "params": params,
        "n_train": args.train_cases - n_val,
        "n_val": n_val,
        "job_s": (job.finished_at - job.started_at).total_seconds(),
        "wall_s": wall,
        "epoch_s": [h["seconds"] for h in job.progress.get("history", [])],
        "val_dice": mv.metrics["val_dice"],
    }


def report(rows: dict, args: argparse.Namespace) -> str:
    load = os.getloadavg()
    lines = [
        "## Workers",
        "",
        "Command (creates and drops the scratch database `lvit_bench_workers`; a real `celery worker --pool=solo`):",
        "",
        "```bash",
        "DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/4 \\",
        "    .venv/bin/python bench/bench_workers.py --append docs/results.md",
        "```",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}), torch threads {rows['threads']}, Python "
        f"{platform.python_version()}, CPU only. Model: LViT-T, 224x224 input, MiniLM text (384-d); random "
        "weights for 1-3.",
        "",
        "| upload -> proposal (warm worker) | uploads | median s | p95 s | worker job median s | queue wait median s |",
        "|---|---|---|---|---|---|",
    ]
    for size, r in rows["latency"].items():
        lines.append(
            f"| {size}x{size} PNG | {r['n']} | {r['median']:.2f} | {r['p95']:.2f} | {r['job_median']:.2f} "
            f"| {r['queue_median']:.3f} |"
        )
    b = rows["batch"]
    job_tput, raw_tput = b["n"] / b["job_s"], b["n"] / b["raw_s"]
    lines += [
        "",
        "| batch proposals | cases | seconds | cases/s | overhead vs raw model |",
        "|---|---|---|---|---|",
        f"| raw `Predictor.predict` (batch 8, in-process, images already decoded) | {b['n']} | {b['raw_s']:.2f} "
        f"| {raw_tput:.2f} | - |",
        f"| `gpu.batch_propose` job (read PNG from storage, predict, write mask + soft map, row) | {b['n']} "
        f"| {b['job_s']:.2f} | {job_tput:.2f} | {100 * (b['job_s'] / b['raw_s'] - 1):+.0f} % |",
        f"| same, enqueue to done (wall) | {b['n']} | {b['wall_s']:.2f} | {b['n'] / b['wall_s']:.2f} "
        f"| {100 * (b['wall_s'] / b['raw_s'] - 1):+.0f} % |",
        "",
        "Raw and job runs interleaved (raw, job, raw, job, raw), minimum of each (shared machine). Inside the "
        f"job (its own clock): model (text features + forward) {b['timings']['predict_s']:.2f} s, reading images "
        f"{b['timings']['read_s']:.2f} s, writing masks + soft maps + rows {b['timings']['write_s']:.2f} s, total "
        f"{b['timings']['total_s']:.2f} s: the pipeline adds "
        f"{100 * (b['timings']['total_s'] / b['timings']['predict_s'] - 1):.1f} % to the model time it contains.",
        "",
        "| EPI update (`gpu.epi_update`, predict + β-EMA + store uint8 map) | cases | seconds | cases/s |",
        "|---|---|---|---|",
        f"| generation 1 (P_0 = prediction) | {rows['epi']['n']} | {rows['epi']['first_s']:.2f} "
        f"| {rows['epi']['n'] / rows['epi']['first_s']:.2f} |",
        f"| generation 2 (P_1 = 0.99 P_0 + 0.01 P̂) | {rows['epi']['n']} | {rows['epi']['second_s']:.2f} "
        f"| {rows['epi']['n'] / rows['epi']['second_s']:.2f} |",
    ]
    if "train" in rows:
        t = rows["train"]
        p = t["params"]
        lines += [
            "",
            f"Retraining round on {t['n_train'] + t['n_val']} accepted cases ({t['n_train']} train, {t['n_val']} val, "
            f"256x256 synthetic images): budget {p['epochs']} epoch(s), input {p['img_size']}x{p['img_size']}, "
            f"batch {p['batch_size']}, {p['mode']}, from scratch.",
            "",
            "| retraining round | seconds |",
            "|---|---|",
            f"| job (prepare data, train, validate, evaluate, store checkpoint, version) | {t['job_s']:.1f} |",
            f"| of which epochs (train + validation) | {' + '.join(f'{s:.1f}' for s in t['epoch_s'])} |",
            f"| enqueue to done (wall) | {t['wall_s']:.1f} |",
            "",
            f"val Dice after the round: {t['val_dice']:.3f} (1 epoch from scratch; a timing, not a quality result).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
