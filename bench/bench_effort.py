"""Effort saved on the demo project: how close each model version's proposals are to the masks accepted from them.

Runs the real studio and worker code in this process (Celery in eager mode, a scratch PostgreSQL database):
``seed_demo`` makes the SYNTHETIC phantom project (accepted train/val/test cases and unlabeled train cases);
round 1 trains v1 on the accepted train cases (the guard decides; a refused v1 is promoted by hand, as an admin
would, so that there are proposals to measure) and proposes for the unlabeled cases; a simulated annotator opens
half of them and accepts the phantom's true mask (what a careful annotator would draw); round 2 fine-tunes v2 on
the larger set, proposes again, and the annotator accepts the other half. Every acceptance stores its effort record
through ``mask_save(accept=True)``; the table is ``selectors.effort_by_model_version``. Control: the Dice an
empty proposal would have on the same cases. Seconds to accept are not reported: the annotator is simulated.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python bench/bench_effort.py --seeds 0 1 --epochs 6 --img-size 64 --size 128

Raw per-seed, per-version rows go to ``bench/results/effort.jsonl`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _db import psql, scratch_url  # bench/ is sys.path[0] when a script here runs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SCRATCH_DB = "lvit_bench_effort"


def one_seed(seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from server.core.models import Membership, Role
    from server.studio import imaging, selectors
    from server.studio.demo import phantom
    from server.studio.management.commands.seed_demo import PROJECT_NAME, demo_plan
    from server.studio.models import Case, CaseState, ModelStatus, ModelVersion, Project
    from server.studio.services.masks import case_open_record, mask_save
    from server.studio.services.registry import model_version_activate
    from server.studio.services.training import training_job_create

    User = get_user_model()
    admin = User.objects.create_user(username=f"bench-{seed}", password=None)
    call_command("seed_demo", user=admin.username, count=args.count, size=args.size, verbosity=0)
    project = Project.objects.get(name=PROJECT_NAME)
    Membership.objects.update_or_create(project=project, user=admin, defaults={"role": Role.ADMIN})
    truth = {e["name"]: e["seed"] for e in demo_plan(args.count)}
    unlabeled = list(Case.objects.filter(project=project).exclude(state=CaseState.LABELED).order_by("name"))
    halves = [unlabeled[: len(unlabeled) // 2], unlabeled[len(unlabeled) // 2 :]]
    rows: list[dict[str, Any]] = []
    for round_no, batch in enumerate(halves, start=1):
        started = time.perf_counter()
        params = {"epochs": args.epochs, "img_size": args.img_size, "mode": "labeled_only", "seed": seed}
        params["init"] = "scratch" if round_no == 1 else "finetune"
        job = training_job_create(project=project, params=params, actor=admin)  # eager: runs on commit
        job.refresh_from_db()
        if job.status != "succeeded":
            raise RuntimeError(f"training job {job.pk} {job.status}: {job.message}")
        mv = ModelVersion.objects.get(training_job=job)
        decision = dict(mv.promotion)
        if mv.status != ModelStatus.ACTIVE:  # refused by the guard: an admin promotes it to get proposals
            model_version_activate(model_version=mv, user=admin)
        train_s = time.perf_counter() - started
        empty_dice = []
        for case in batch:
            case.refresh_from_db()
            assert case.head_mask is not None and case.head_mask.model_version_id == mv.pk, "proposal missing"
            case_open_record(case=case, user=admin)
            mask = phantom(truth[case.name], size=args.size).mask
            empty_dice.append(1.0 if not mask.any() else 0.0)
            mask_save(
                case=case,
                user=admin,
                png_bytes=imaging.encode_mask(mask),
                base_version=case.head_mask.version,
                accept=True,
            )
        effort = selectors.effort_by_model_version(project=project).get(mv.pk) or {}
        rows.append(
            {
                "seed": seed,
                "round": round_no,
                "model_version": mv.number,
                "init": params["init"],
                "epochs": args.epochs,
                "img_size": args.img_size,
                "n_train": mv.metrics.get("n_labeled"),
                "val_dice": mv.metrics.get("val_dice"),
                "validation_set_version": (mv.metrics.get("validation_set") or {}).get("version"),
                "test_dice": mv.metrics.get("test_dice"),
                "auto_promoted": decision.get("promoted"),
                "reason": decision.get("reason"),
                "n_accepted": effort.get("n_from_proposal"),
                "mean_dice": effort.get("mean_dice"),
                "fraction_unchanged": effort.get("fraction_unchanged"),
                "mean_added": effort.get("mean_added"),
                "mean_removed": effort.get("mean_removed"),
                "empty_proposal_dice": round(float(np.mean(empty_dice)), 4) if empty_dice else None,
                "round_seconds": round(train_s, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| seed | version | init | n train | val Dice (set v) | test Dice | auto-promoted | accepted from it | "
        "proposal vs accepted Dice | accepted unchanged | mean px added / removed | empty proposal Dice |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | v{r['model_version']} | {r['init']} | {r['n_train']} | {r['val_dice']:.3f} "
            f"(v{r['validation_set_version']}) | {r['test_dice']:.3f} | {'yes' if r['auto_promoted'] else 'no'} | "
            f"{r['n_accepted']} | {r['mean_dice']:.3f} | {r['fraction_unchanged']:.2f} | "
            f"{r['mean_added']:.0f} / {r['mean_removed']:.0f} | {r['empty_proposal_dice']:.3f} |"
        )
    for v in sorted({r["model_version"] for r in rows}):
        sel = [r for r in rows if r["model_version"] == v]
        lines.append(
            f"\nv{v}: median over {len(sel)} seeds: proposal vs accepted Dice "
            f"{statistics.median(r['mean_dice'] for r in sel):.3f}, empty-proposal control "
            f"{statistics.median(r['empty_proposal_dice'] for r in sel):.3f}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=128, help="phantom size in pixels")
    parser.add_argument("--count", type=int, default=36, help="demo cases (seed_demo --count)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "effort.jsonl")
    args = parser.parse_args()

    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        sys.exit("DATABASE_URL must name a PostgreSQL server (a scratch database is created there)")
    tmp = Path(tempfile.mkdtemp(prefix="lvit-bench-effort-"))
    os.environ.update(
        DATABASE_URL=scratch_url(base, SCRATCH_DB),
        LVIT_MEDIA_ROOT=str(tmp / "media"),
        LVIT_CHECKPOINT_CACHE_DIR=str(tmp / "checkpoints"),
        DJANGO_SETTINGS_MODULE="server.settings",
        LVIT_CELERY_EAGER="1",
        ML_DEVICE=os.environ.get("ML_DEVICE", "cpu"),
    )
    import django

    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        psql(base, f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
        psql(base, f"CREATE DATABASE {SCRATCH_DB}")
        if not rows:
            django.setup()
        from django.core.management import call_command
        from django.db import connections

        call_command("migrate", verbosity=0)
        try:
            rows += one_seed(seed, args)
        finally:
            connections.close_all()
            psql(base, f"DROP DATABASE IF EXISTS {SCRATCH_DB}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
