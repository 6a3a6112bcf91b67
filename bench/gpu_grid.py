"""The whole text-steering grid on one GPU in one go, at the paper's 224 px, sized to a wall-clock budget.

What it runs (``bench/quality_grid.py`` underneath, same JSON lines appended to bench/results/quality_grid.jsonl with
``budget`` = ``--budget``): covid_cxr Train -> Val and MoNuSeg Train -> Test (the MoNuSeg reproduction: reference
LViT-T 80.36, U-Net 76.45 Dice) with LViT-T + zone prior, LViT-T (app text length), LViT-T (L = 10), LViT-TW and
U-Net, and the 25 %-labels covid_cxr grid (the app's LViT-T + zones: labeled-only with the same steps, plain
pseudo-labels, EPI, EPI + LV, EPI + LV with report-gated pseudo-labels), seeds 0 1 2.

How it fits the budget: the paper trains for hundreds of epochs with early stopping; that does not fit 9 minutes for
30 runs. So it (1) times two epochs of LViT-T + zones on covid_cxr at 224 px on this GPU, (2) picks the largest
epoch count that lets all runs finish in the budget with ``--parallel`` training processes sharing the GPU (every
model of a group gets the same epochs; MoNuSeg gets ``--monuseg-ratio`` times the covid_cxr epochs, capped at the
reference's early-stopping horizon), (3) starts the shards and stops them at the deadline (rows of finished runs are
kept; a cut-short run writes nothing). The chosen epochs are printed and recorded in every row.

    python bench/gpu_grid.py                                   # on the GPU machine: ~8.5 minutes
    python bench/gpu_grid.py --device cpu --img-size 32 --limit 4 --seeds 0 --epochs 1 --minutes 5 \\
        --parallel 2 --budget smoke --out /tmp/grid.jsonl     # the CPU dry run that proves it runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "bench" / "quality_grid.py"
MODELS = ["lvit_zones", "lvit_app", "lvit_l10", "lvit_tw", "unet"]
SEMI_VARIANTS = ["labeled_same_steps", "pseudo", "epi", "epi_lv", "epi_lv_gate"]
COST = {"lvit_zones": 1.0, "lvit_app": 1.0, "lvit_l10": 1.0, "lvit_tw": 1.0, "unet": 0.6}  # relative epoch cost


def grid_args(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        sys.executable, str(GRID), "--data-root", args.data_root, "--out", str(out), "--run-dir", args.run_dir,
        "--img-size", str(args.img_size), "--batch-size", str(args.batch_size), "--device", args.device,
        "--workers", str(args.workers), "--budget", args.budget, "--patience", str(args.patience),
        "--limit", str(args.limit),
    ]  # fmt: skip


def calibrate(args: argparse.Namespace) -> float:
    """Seconds per covid_cxr epoch of LViT-T + zones here (the second of two epochs; loader, validation included)."""
    out = Path(args.run_dir) / "calibrate.jsonl"
    out.unlink(missing_ok=True)
    cmd = [*grid_args(args, out), "--groups", "cxr", "--models", "lvit_zones", "--seeds", "0", "--epochs", "2"]
    cmd[cmd.index("--budget") + 1] = "calibration"
    subprocess.run(cmd, cwd=REPO, check=True, timeout=args.minutes * 60)
    row = json.loads(out.read_text().splitlines()[-1])
    seconds = sorted(h["seconds"] for h in row["history"])
    return (
        seconds[-1] if len(seconds) == 1 else seconds[len(seconds) // 2 - 1 if len(seconds) == 2 else len(seconds) // 2]
    )


def plan_cost(args: argparse.Namespace, epochs_cxr: int, epochs_monuseg: int) -> float:
    """Cost of the grid in covid_cxr LViT epochs (MoNuSeg: 24 train images at batch 4 vs covid_cxr's 63;
    cxr-semi: 47 unlabeled images set the epoch length, labeled and unlabeled halves in one forward)."""
    per_seed = 0.0
    if "cxr" in args.groups:
        per_seed += sum(COST[m] for m in args.models) * epochs_cxr
    if "monuseg" in args.groups:
        per_seed += sum(COST[m] for m in args.models) * epochs_monuseg * (24 / 63 + 0.3)  # + Test-set evaluation
    if "cxr-semi" in args.groups:
        per_seed += len(args.semi_variants) * 1.5 * epochs_cxr
    return per_seed * len(args.seeds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "quality_grid.jsonl"))
    p.add_argument("--run-dir", default=str(REPO / "bench" / "out" / "gpu_grid"))
    p.add_argument("--groups", nargs="+", default=["cxr", "monuseg", "cxr-semi"])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--semi-model", default="lvit_zones", help="the 25 %%-labels grid's network (the app's default)")
    p.add_argument("--semi-variants", nargs="+", default=SEMI_VARIANTS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--patience", type=int, default=50, help="the reference's early stopping")
    p.add_argument("--device", default="cuda")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--parallel", type=int, default=6, help="training processes sharing the GPU")
    p.add_argument("--minutes", type=float, default=8.5, help="wall-clock budget for everything")
    p.add_argument("--epochs", type=int, default=0, help="fixed covid_cxr epochs (0: size them to the budget)")
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--monuseg-ratio", type=float, default=2.0, help="MoNuSeg epochs per covid_cxr epoch")
    p.add_argument("--efficiency", type=float, default=0.5, help="assumed speed-up per added parallel process")
    p.add_argument("--limit", type=int, default=0, help="first N images per split (dry runs)")
    p.add_argument("--budget", default="gpu224")
    args = p.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    if args.epochs:
        epochs = args.epochs
    else:
        s_epoch = calibrate(args)
        left = deadline - time.monotonic() - 45  # process start-up, text model, final tables
        speedup = 1 + args.efficiency * (args.parallel - 1)
        unit = plan_cost(args, 1, args.monuseg_ratio)  # cost of one covid_cxr epoch (and ratio MoNuSeg epochs)
        epochs = max(1, min(args.max_epochs, math.floor(left * speedup / (unit * s_epoch))))
        print(f"calibration: {s_epoch:.2f} s per covid_cxr epoch; {left:.0f} s left; {speedup:.1f}x from "
              f"{args.parallel} processes -> {epochs} covid_cxr epochs", flush=True)  # fmt: skip
    epochs_monuseg = max(1, min(args.max_epochs, round(epochs * args.monuseg_ratio)))
    print(f"grid: {args.groups}, {args.models}, seeds {args.seeds}, {args.img_size} px, "
          f"epochs covid_cxr {epochs} / MoNuSeg {epochs_monuseg}, {args.parallel} processes", flush=True)  # fmt: skip

    shards = []
    for k in range(args.parallel):
        out = run_dir / f"shard{k}.jsonl"
        out.unlink(missing_ok=True)
        cmd = [
            *grid_args(args, out),
            "--groups", *args.groups, "--models", *args.models, "--seeds", *map(str, args.seeds),
            "--epochs", str(epochs), "--epochs-monuseg", str(epochs_monuseg), "--shard", f"{k}/{args.parallel}",
            "--semi-model", args.semi_model, "--semi-variants", *args.semi_variants,
        ]  # fmt: skip
        log = (run_dir / f"shard{k}.log").open("w")
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // args.parallel)))
        shards.append((subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env), out, log))
    for proc, _, _ in shards:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()  # its finished runs are already in its shard file
            proc.wait()
    rows = []
    for proc, out, log in shards:
        log.close()
        if out.exists():
            rows += [line for line in out.read_text().splitlines() if line.strip()]
        if proc.returncode not in (0, -9):
            print(f"shard {out.name} exited with {proc.returncode}; see {out.with_suffix('.log')}", flush=True)
    results = Path(args.out)
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as fh:
        fh.writelines(line + "\n" for line in rows)
    print(f"{len(rows)} runs finished in {(time.monotonic() - started) / 60:.1f} min -> {results}", flush=True)
    subprocess.run([sys.executable, str(REPO / "bench" / "quality_tables.py"), "--results", str(results),
                    "--budget", args.budget], cwd=REPO, check=False)  # fmt: skip
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
