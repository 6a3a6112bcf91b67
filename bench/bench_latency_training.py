"""Upload -> proposal latency while a training round runs on the other pool, against idle, in the same run.

Starts the two worker pools exactly as ``make run`` does (``server/devrun.py``: the inference pool on queues
``inference,default`` and the training pool on ``training``, each with ``LVIT_TORCH_THREADS`` = half of the
cores unless given, the training pool at ``LVIT_WORKER_NICE=10``), a real LViT-T (random weights: latency does not depend on them) as one project's active
model, and a second project with accepted cases to train on. Then, for ``--rounds`` rounds, alternating:

1. idle: ``--uploads`` uploads one after another, each timed from ``case_create`` until its proposal is stored;
2. busy: a training round (``--train-img-size``, ``--train-epochs`` large enough to outlast the block) is started
   and has entered its training steps; the same number of uploads; then the round is cancelled.

Finally one short training round runs to completion on an idle machine (``--calibrate-epochs``): its recorded
throughput (seconds per image-epoch, ``Job.result["throughput"]``) is the CPU default of the training estimate
(``server/studio/conf.py``). Prints a table (medians, p90 and the busy/idle ratio) and appends every upload and
the summary as JSON lines to ``bench/results/latency_training.jsonl``. Creates and drops the scratch database
``lvit_bench_pools``:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/4 \\
        .venv/bin/python bench/bench_latency_training.py [--rounds 2 --uploads 8]

REDIS_URL should be a database number nothing else uses (the bench purges its Celery queues).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _db import drop_scratch, scratch_django  # bench/ is sys.path[0] when a script here runs
from bench_workers import SENTENCE, add_labeled_cases, pct, synthetic, wait

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SCRATCH_DB = "lvit_bench_pools"
RESULTS = REPO / "bench" / "results" / "latency_training.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="idle/busy block pairs, alternating")
    parser.add_argument("--uploads", type=int, default=8, help="uploads per block")
    parser.add_argument("--image-size", type=int, default=256, help="uploaded image side (px)")
    parser.add_argument("--model-img-size", type=int, default=224, help="the served model's input size")
    parser.add_argument("--train-cases", type=int, default=30, help="accepted cases of the training project")
    parser.add_argument("--train-img-size", type=int, default=112)
    parser.add_argument("--train-epochs", type=int, default=500, help="the busy round's budget (it is cancelled)")
    parser.add_argument("--calibrate-epochs", type=int, default=2, help="0: skip the throughput calibration")
    cores = os.cpu_count() or 1
    parser.add_argument("--threads-inference", type=int, default=max(1, cores // 2))
    parser.add_argument("--threads-training", type=int, default=max(1, cores - cores // 2))
    parser.add_argument("--nice-training", type=int, default=10, help="the training pool's CPU priority (make run: 10)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    base, tmp = scratch_django(
        SCRATCH_DB,
        prefix="lvit-bench-pools-",
        why="the worker processes share the database",
        LVIT_CELERY_EAGER="0",
        ML_DEVICE=os.environ.get("ML_DEVICE", "cpu"),
    )
    from server.celery import app
    from tests.support.celery_worker import WorkerProcess

    app.control.purge()
    pools = {}
    for name, queues, threads, nice in (
        ("inference", ("inference", "default"), args.threads_inference, 0),
        ("training", ("training",), args.threads_training, args.nice_training),
    ):
        (tmp / name).mkdir()
        env = {
            **os.environ,
            "LVIT_TORCH_THREADS": str(threads),
            "OMP_NUM_THREADS": str(threads),
            "LVIT_WORKER_NICE": str(nice),
        }
        pools[name] = WorkerProcess(env, tmp / name, app="server", queues=queues, node_name=lambda n, p=name: f"{p}@%h")
    try:
        for worker in pools.values():
            worker.start(timeout=180)
        rows = run(args, tmp, pools)
    finally:
        for worker in pools.values():
            worker.stop(timeout=60)
        drop_scratch(base, SCRATCH_DB)
    summary = summarize(rows, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as fh:
        for row in rows["uploads"]:
            fh.write(json.dumps({"run": rows["run"], **row}) + "\n")
        fh.write(json.dumps({"run": rows["run"], "summary": summary}) + "\n")
    print(report(summary))
    return 0


def run(args: argparse.Namespace, tmp: Path, pools: dict) -> dict:
    import torch
    from django.contrib.auth import get_user_model

    from ml.config import LViTConfig
    from ml.models import build_model
    from ml.predict import save_checkpoint
    from server.jobs.models import Job, JobStatus
    from server.studio.models import JobKind, MaskKind, MaskVersion, ModelStatus, ModelVersion
    from server.studio.services.cases import case_create
    from server.studio.services.jobs import project_job_cancel
    from server.studio.services.projects import project_create
    from server.studio.services.registry import model_version_create
    from server.studio.services.training import training_job_create

    user = get_user_model().objects.create_user(username="bench", password="bench-123456789")
    served = project_create(user=user, name="served", template="free-text")
    torch.manual_seed(0)
    cfg = LViTConfig(img_size=args.model_img_size)
    ckpt = save_checkpoint(tmp / "lvit-t.pt", build_model(cfg), cfg)
    mv = model_version_create(
        project=served, checkpoint=ckpt, config={"model": cfg.to_dict()}, metrics={}, parent=None, training_job=None
    )
    ModelVersion.objects.filter(pk=mv.pk).update(status=ModelStatus.ACTIVE)

    trained = project_create(user=user, name="trained", template="free-text")
    n_val = max(1, args.train_cases // 5)
    add_labeled_cases(trained, user, train=args.train_cases - n_val, val=n_val)

    log = pools["inference"].log_path
    counter = iter(range(1, 10**6))

    def upload(phase: str, round_no: int) -> dict:
        seed = next(counter)
        data, _ = synthetic(seed, args.image_size)
        t0 = time.perf_counter()
        case = case_create(
            project=served, user=user, data=data, filename=f"u{seed}.png", split="test", report_text=SENTENCE
        )
        wait(lambda: MaskVersion.objects.filter(case=case, kind=MaskKind.PROPOSAL).exists(), 600, "a proposal", log)
        latency = time.perf_counter() - t0
        job = wait(
            lambda: Job.objects.filter(case=case, kind=JobKind.PROPOSAL, finished_at__isnull=False).first(),
            60,
            "the proposal job to finish",
            log,
        )
        return {
            "phase": phase,
            "round": round_no,
            "latency_s": latency,
            "queue_s": (job.started_at - job.created_at).total_seconds(),
            "job_s": (job.finished_at - job.started_at).total_seconds(),
            "device": job.device,
        }

    params = {"img_size": args.train_img_size, "batch_size": 4, "mode": "labeled_only", "init": "scratch"}
    upload("warm-up", 0)  # the inference worker warmed the text model at start; this loads the served model
    uploads: list[dict] = []
    for round_no in range(1, args.rounds + 1):
        uploads += [upload("idle", round_no) for _ in range(args.uploads)]
        job = training_job_create(project=trained, params={**params, "epochs": args.train_epochs}, actor=user)
        wait(
            lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, progress__phase="train").exists(),  # noqa: B023
            600,
            "the training round to reach its training steps",
            pools["training"].log_path,
        )
        busy = [upload("busy", round_no) for _ in range(args.uploads)]
        job.refresh_from_db()
        if job.status != JobStatus.RUNNING:
            raise RuntimeError(f"the training round ended during the busy block ({job.status}): raise --train-epochs")
        for row in busy:
            row["training_epoch"] = job.progress.get("epoch")
        uploads += busy
        project_job_cancel(job=job, user=user)
        wait(
            lambda: (
                not Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists()  # noqa: B023
                and not app_active(pools["training"])
            ),
            300,
            "the cancelled round to stop",
            pools["training"].log_path,
        )

    calibration = None
    if args.calibrate_epochs:
        job = training_job_create(project=trained, params={**params, "epochs": args.calibrate_epochs}, actor=user)
        job = wait(
            lambda: Job.objects.filter(pk=job.pk, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
            6 * 3600,
            "the calibration round",
            pools["training"].log_path,
        )
        if job.status != JobStatus.SUCCEEDED:
            raise RuntimeError(f"calibration round failed: {job.message}")
        calibration = job.result["throughput"]
    return {
        "run": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "uploads": uploads,
        "calibration": calibration,
        "threads": {"inference": args.threads_inference, "training": args.threads_training},
        "nice_training": args.nice_training,
    }


def app_active(worker) -> bool:  # type: ignore[no-untyped-def]
    """Whether the worker is executing a task (asked over the broker)."""
    from server.celery import app

    active = app.control.inspect(timeout=1.0).active() or {}
    return any(tasks for node, tasks in active.items() if node.startswith("training@"))


def summarize(rows: dict, args: argparse.Namespace) -> dict:
    out: dict = {
        "command": "python bench/bench_latency_training.py " + " ".join(sys.argv[1:]),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "threads": rows["threads"],
        "nice_training": rows["nice_training"],
        "image_size": args.image_size,
        "model_img_size": args.model_img_size,
        "train_img_size": args.train_img_size,
        "calibration": rows["calibration"],
    }
    for phase in ("idle", "busy"):
        lat = [r["latency_s"] for r in rows["uploads"] if r["phase"] == phase]
        out[phase] = {
            "n": len(lat),
            "median_s": statistics.median(lat),
            "p90_s": pct(lat, 0.9),
            "queue_median_s": statistics.median(r["queue_s"] for r in rows["uploads"] if r["phase"] == phase),
            "job_median_s": statistics.median(r["job_s"] for r in rows["uploads"] if r["phase"] == phase),
        }
    out["ratio_busy_idle"] = out["busy"]["median_s"] / out["idle"]["median_s"]
    return out


def report(s: dict) -> str:
    lines = [
        f"{s['command']}  ({s['cores']} cores, threads inference/training {s['threads']['inference']}/"
        f"{s['threads']['training']}, training pool nice {s['nice_training']}, load average {' / '.join(map(str, s['load_avg']))})",
        "",
        "| while | uploads | median upload -> proposal s | p90 s | median wait in queue s | median job run s |",
        "|---|---|---|---|---|---|",
    ]
    for phase, label in (("idle", "idle"), ("busy", "a training round runs on the training pool")):
        p = s[phase]
        lines.append(
            f"| {label} | {p['n']} | {p['median_s']:.2f} | {p['p90_s']:.2f} | {p['queue_median_s']:.2f} "
            f"| {p['job_median_s']:.2f} |"
        )
    lines.append(f"\nratio of medians, training / idle: {s['ratio_busy_idle']:.2f}x (goal <= 1.5x)")
    c = s["calibration"]
    if c:
        lines.append(
            f"training throughput ({c['device']}, {c['img_size']} px, {c['images']} images x {c['epochs']} epochs, "
            f"{s['threads']['training']} threads): {c['seconds_per_image_epoch']:.3f} s per image-epoch"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
