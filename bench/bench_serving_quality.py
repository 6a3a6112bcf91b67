"""Do the fast inference engines change a trained checkpoint's masks? Dice of each engine's masks against the
eager model's, and each engine's validation Dice against the ground truth.

For every image of the given splits the eager model (PyTorch, float32, as trained) and each engine
(``ml.serving``: backend/precision) segment the same prepared input (``ml.data.LViTDataset`` at the model's
size, as ``ml.train.evaluate`` feeds it). Reported per engine:

- agreement with eager: per-image Dice between the engine's mask and eager's (both empty = 1.0), its mean and
  minimum over images, and the fraction of pixels whose mask value differs;
- quality: per-image Dice against the ground truth averaged over images (``ml.metrics``), and its difference
  from eager's in Dice points;
- the largest absolute logit difference from eager.

One JSON line per (checkpoint, split, engine) is appended to ``--out`` (raw per-image Dice included), and
the table is printed. Example::

    OMP_NUM_THREADS=1 python bench/bench_serving_quality.py --threads 1 \\
        --checkpoint runs/cxr112/best.pt --data ../shared/data/covid_cxr --splits Val \\
        --engines torch:fp32 torch:bf16 torch:int8 openvino:fp32 openvino:bf16 onnxruntime:fp32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.data import LViTDataset, scan_split  # noqa: E402
from ml.metrics import MetricAccumulator  # noqa: E402
from ml.predict import Predictor, load_model  # noqa: E402
from ml.serving import cpu_features  # noqa: E402
from ml.text import TextEmbedder  # noqa: E402


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def batched_logits(
    predictor: Predictor, images: torch.Tensor, text: torch.Tensor | None, batch: int, zones: torch.Tensor | None = None
) -> torch.Tensor:
    out = []
    for s in range(0, images.shape[0], batch):
        part = (t if t is None else t[s : s + batch] for t in (text, zones))
        out.append(predictor.logits(images[s : s + batch], *part))
    return torch.cat(out)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    model, cfg, ckpt = load_model(args.checkpoint)
    embedder = TextEmbedder(args.text_model, length=cfg.text_len) if cfg.uses_text else None
    eager = Predictor(model, cfg, fast=False)
    engines = {}
    for spec in args.engines:
        backend, precision = spec.split(":")
        start = time.perf_counter()
        engines[spec] = (Predictor(model, cfg, backend=backend, precision=precision, cache_dir=args.cache_dir), 0.0)
        engines[spec] = (engines[spec][0], time.perf_counter() - start)
    rows = []
    for split in args.splits:
        dataset = LViTDataset(
            scan_split(args.data, split),
            image_size=cfg.img_size,
            in_channels=cfg.in_channels,
            text=embedder,
            zones=cfg.uses_zones,  # lvit_zones: the report's zone prior, as training and the app feed it
        )
        items = [dataset[i] for i in range(len(dataset))]
        images = torch.stack([it["image"] for it in items])
        text = torch.stack([it["text"] for it in items]) if cfg.uses_text else None
        zones = torch.stack([it["zones"] for it in items]) if cfg.uses_zones else None
        gt = torch.stack([it["mask"] for it in items])
        names = [it["name"] for it in items]

        ref = batched_logits(eager, images, text, args.batch_size, zones)
        ref_mask = (torch.sigmoid(ref) > 0.5).numpy()[:, 0]
        ref_acc = MetricAccumulator()
        ref_acc.update(torch.sigmoid(ref), gt, names)
        ref_dice = ref_acc.compute().dice
        for spec, (predictor, setup_s) in engines.items():
            out = batched_logits(predictor, images, text, args.batch_size, zones)
            mask = (torch.sigmoid(out) > 0.5).numpy()[:, 0]
            agree = [mask_dice(m, r) for m, r in zip(mask, ref_mask, strict=True)]
            acc = MetricAccumulator()
            acc.update(torch.sigmoid(out), gt, names)
            dice = acc.compute().dice
            row = {
                "checkpoint": str(args.checkpoint),
                "model": cfg.model_name,
                "img_size": cfg.img_size,
                "epoch": ckpt.get("epoch"),
                "data": Path(args.data).name,
                "split": split,
                "n": len(items),
                "engine": spec,
                "describe": predictor.describe(),
                "setup_s": setup_s,
                "dice_vs_eager_mean": float(np.mean(agree)),
                "dice_vs_eager_min": float(np.min(agree)),
                "pixels_flipped": float((mask != ref_mask).mean()),
                "max_abs_logit_diff": float((out - ref).abs().max()),
                "val_dice_eager": ref_dice,
                "val_dice": dice,
                "val_dice_diff_points": 100.0 * (dice - ref_dice),
                "per_image_dice_vs_eager": dict(zip(names, agree, strict=True)),
            }
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


HEADER = (
    "| data / split | model (epoch) | engine | Dice vs eager: mean | min | pixels flipped | max abs logit diff "
    "| val Dice eager | val Dice engine | diff (points) |\n|---|---|---|---|---|---|---|---|---|---|"
)


def format_row(r: dict[str, Any]) -> str:
    epoch = "-" if r["epoch"] is None else r["epoch"] + 1
    return (
        f"| {r['data']} / {r['split']} (n={r['n']}) | {r['model']} {r['img_size']}px ({epoch}) | {r['engine']} "
        f"| {r['dice_vs_eager_mean']:.4f} | {r['dice_vs_eager_min']:.4f} | {100 * r['pixels_flipped']:.3f} % "
        f"| {r['max_abs_logit_diff']:.1e} | {100 * r['val_dice_eager']:.2f} | {100 * r['val_dice']:.2f} "
        f"| {r['val_dice_diff_points']:+.2f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--data")
    p.add_argument("--splits", nargs="+", default=["Val"])
    p.add_argument(
        "--engines",
        nargs="+",
        default=["torch:fp32", "torch:bf16", "torch:int8", "openvino:fp32", "openvino:bf16", "onnxruntime:fp32"],
        help="backend:precision pairs (ml.serving)",
    )
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--text-model", default=None)
    p.add_argument("--cache-dir", default=None, help="converted-model cache (ml.serving)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "serving_quality.jsonl")
    p.add_argument("--report", type=Path, nargs="*", help="only print the table of these JSON-lines files")
    args = p.parse_args()
    if args.report is not None:
        rows = [json.loads(line) for path in args.report for line in path.read_text().splitlines() if line.strip()]
        print(HEADER)
        for r in rows:
            print(format_row(r))
        return
    if args.checkpoint is None or args.data is None:
        p.error("--checkpoint and --data are required (or --report FILE)")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU features: {cpu_features().summary()}; torch threads {torch.get_num_threads()}", flush=True)
    print(HEADER, flush=True)
    rows = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
