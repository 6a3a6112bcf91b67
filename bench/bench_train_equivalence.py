"""Does the fast training step learn the same thing? Loss curves and validation Dice, float32 step vs fast step.

For each seed, two runs of ``ml.train.Trainer`` on the same data, epochs, batch size, LR schedule and
augmentation: ``fp32`` = the step before the speed options (float32, NCHW, Adam looping over tensors) and
``fast`` = ``TrainConfig``'s defaults (channels-last, fused Adam, bf16 autocast on CPUs with AMX-BF16). Per
epoch: mean training loss, validation Dice, wall-clock seconds. The fp32-vs-fast gap at equal seed is then
compared with the gap between seeds of the same mode (the seed noise). One JSON line per run in ``--out``;
``--report`` prints the tables from that file.

    OMP_NUM_THREADS=1 python bench/bench_train_equivalence.py --data ../shared/data/monuseg --in-channels 3 \\
        --lr 1e-3 --img-size 112 --epochs 5 --seeds 0 1 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.config import LViTConfig  # noqa: E402
from ml.serving import cpu_features  # noqa: E402
from ml.text import TextEmbedder  # noqa: E402
from ml.train import TrainConfig, Trainer, folder_samples, training_dtype  # noqa: E402

MODES = {
    "fp32": {"precision": "fp32", "channels_last": False, "fused_optimizer": False},
    "fast": {},
}


def run_one(args: argparse.Namespace, mode: str, seed: int, embedder: TextEmbedder) -> dict[str, Any]:
    train, _, val = folder_samples(args.data)
    model_cfg = LViTConfig(img_size=args.img_size, in_channels=args.in_channels, text_dim=embedder.dim)
    cfg = TrainConfig(
        out_dir=str(REPO / "bench" / "out" / "equivalence" / f"{Path(args.data).name}-{mode}-{seed}"),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=seed,
        save_best=False,
        save_last=False,
        **MODES[mode],
    )
    trainer = Trainer(cfg, model_cfg, train, val, text_embedder=embedder)
    start = time.perf_counter()
    result = trainer.fit()
    dtype = training_dtype(cfg, trainer.device)
    return {
        "data": Path(args.data).name,
        "mode": mode,
        "autocast": str(dtype).replace("torch.", "") if dtype is not None else "float32",
        "seed": seed,
        "img_size": args.img_size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "loss": [h["losses"]["loss"] for h in result.history],
        "val_dice": [h["val"]["dice"] for h in result.history],
        "seconds": [h["seconds"] for h in result.history],
        "total_s": time.perf_counter() - start,
        "cpu": cpu_features().summary(),
        "threads": torch.get_num_threads(),
    }


def report(rows: list[dict[str, Any]]) -> None:
    by = {(r["data"], r["mode"], r["seed"]): r for r in rows}
    datasets = sorted({r["data"] for r in rows})
    for data in datasets:
        seeds = sorted({s for d, _, s in by if d == data})
        print(
            f"\n{data}: per-epoch mean training loss / validation Dice (autocast of 'fast': "
            f"{next((r['autocast'] for r in rows if r['data'] == data and r['mode'] == 'fast'), '-')})\n"
        )
        print("| run | " + " | ".join(f"epoch {i + 1}" for i in range(len(rows[0]["loss"]))) + " | s / epoch |")
        print("|---|" + "---|" * (len(rows[0]["loss"]) + 1))
        for mode in MODES:
            for seed in seeds:
                r = by.get((data, mode, seed))
                if r is None:
                    continue
                cells = " | ".join(f"{lo:.4f} / {d:.3f}" for lo, d in zip(r["loss"], r["val_dice"], strict=True))
                print(f"| {mode} seed {seed} | {cells} | {statistics.median(r['seconds']):.0f} |")
        pairs = [
            (by[(data, "fp32", s)], by[(data, "fast", s)])
            for s in seeds
            if (data, "fp32", s) in by and (data, "fast", s) in by
        ]
        if pairs:
            mode_gap = [max(abs(a - b) for a, b in zip(p[0]["loss"], p[1]["loss"], strict=True)) for p in pairs]
            print(f"\nlargest per-epoch loss gap, fp32 vs fast at equal seed: {max(mode_gap):.4f}")
            for mode in MODES:
                runs = [by[(data, mode, s)] for s in seeds if (data, mode, s) in by]
                if len(runs) > 1:
                    gap = max(abs(a - b) for a, b in zip(runs[0]["loss"], runs[1]["loss"], strict=True))
                    print(f"largest per-epoch loss gap between seeds {seeds[0]} and {seeds[1]} ({mode}): {gap:.4f}")
            final = [(p[1]["val_dice"][-1] - p[0]["val_dice"][-1]) * 100 for p in pairs]
            speed = [statistics.median(p[0]["seconds"]) / statistics.median(p[1]["seconds"]) for p in pairs]
            print("final val Dice, fast - fp32 (points): " + ", ".join(f"{x:+.2f}" for x in final))
            print("epoch time ratio fp32 / fast: " + ", ".join(f"{x:.2f}x" for x in speed))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--img-size", type=int, default=112)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "train_equivalence.jsonl")
    p.add_argument("--report", action="store_true", help="print the tables of --out and exit")
    args = p.parse_args()
    if args.report:
        report([json.loads(line) for line in args.out.read_text().splitlines() if line.strip()])
        return
    if args.data is None:
        p.error("--data is required")
    if args.threads:
        torch.set_num_threads(args.threads)
    embedder = TextEmbedder(length=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for mode in args.modes:
            row = run_one(args, mode, seed, embedder)
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{mode} seed {seed}: loss {row['loss']} val dice {row['val_dice']}", flush=True)


if __name__ == "__main__":
    main()
