"""Training throughput: cached text features vs text recomputed per sample (what the reference does).

The reference LViT runs its BERT embedder inside ``Dataset.__getitem__`` for every sample of every epoch.
Our ``TextEmbedder`` caches word features per sentence, so after the first pass a sample's text costs a
dictionary lookup. This bench trains the same model on the same real images with both text sources,
interleaving rounds (cached, recomputed, cached, ...) so drift in machine load hits both alike, and prints
median images/sec side by side, the data loader's own rate (what it could feed a fast GPU), and the
per-sentence text cost on its own.

    nice python bench/bench_train_throughput.py --data ../shared/data/covid_cxr --rounds 5 --steps 4
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.config import LViTConfig  # noqa: E402
from ml.data import LViTDataset, scan_split  # noqa: E402
from ml.losses import DiceBCELoss  # noqa: E402
from ml.models import build_model  # noqa: E402
from ml.text import TextEmbedder  # noqa: E402


def images_per_second(model, loader, optimizer, loss_fn, steps: int, device: torch.device, amp: bool) -> float:
    """Run ``steps`` training steps (data loading included) and return images/sec."""
    model.train()
    n, it = 0, iter(loader)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        images = batch["image"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(images, batch["text"].to(device, non_blocking=True))
        loss = loss_fn(logits.float(), batch["mask"].to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def loader_images_per_second(loader, batches: int) -> float:
    """Iterate ``batches`` batches of the loader alone (decode cache warm, augmentation, text): images/sec."""
    n, it = 0, iter(loader)
    start = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "covid_cxr"))
    p.add_argument("--split", default="Train")
    p.add_argument("--in-channels", type=int, default=1)
    p.add_argument("--n-images", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=4, help="training steps per round")
    p.add_argument("--loader-batches", type=int, default=16, help="batches per round for the loader-alone rate")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--text-model", default=None, help="local BERT-family directory (default: bundled MiniLM)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    torch.manual_seed(0)
    samples = scan_split(args.data, args.split)[: args.n_images]
    cached = TextEmbedder(args.text_model)  # memory LRU; warmed by the dataset in one batched pass
    recompute = TextEmbedder(args.text_model, memory_cache_size=0)  # no cache: the model runs per sample
    recompute.embed("warm up")  # load the model outside the timed region
    ds_args = {"image_size": args.img_size, "in_channels": args.in_channels, "augment": True}
    loaders = {
        "cached": DataLoader(
            LViTDataset(samples, text=cached, **ds_args),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
        ),
        "recomputed": DataLoader(
            LViTDataset(samples, text=recompute.embed, **ds_args),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
        ),
    }
    for loader in loaders.values():  # decode + resize images once for both (image cache), untimed
        for _ in loader:
            pass

    cfg = LViTConfig(img_size=args.img_size, in_channels=args.in_channels, text_dim=cached.dim)
    model = build_model(cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = DiceBCELoss()
    amp = device.type == "cuda"
    images_per_second(model, loaders["cached"], optimizer, loss_fn, 1, device, amp)  # warm-up step

    rates: dict[str, list[float]] = {k: [] for k in loaders}
    feed: dict[str, list[float]] = {k: [] for k in loaders}
    for r in range(args.rounds):
        for mode, loader in loaders.items():
            rates[mode].append(images_per_second(model, loader, optimizer, loss_fn, args.steps, device, amp))
            feed[mode].append(loader_images_per_second(loader, args.loader_batches))
        print(
            f"round {r + 1}/{args.rounds}: training "
            + "  ".join(f"{k} {v[-1]:.3f} img/s" for k, v in rates.items())
            + " | loader alone "
            + "  ".join(f"{k} {v[-1]:.1f} img/s" for k, v in feed.items()),
            flush=True,
        )

    # the text cost alone, per sentence
    sentences = [s.sentence for s in samples]
    t0 = time.perf_counter()
    for s in sentences:
        recompute.embed(s)
    per_recompute = (time.perf_counter() - t0) / len(sentences)
    t0 = time.perf_counter()
    for _ in range(20):
        for s in sentences:
            cached.embed(s)
    per_hit = (time.perf_counter() - t0) / (20 * len(sentences))

    med = {k: statistics.median(v) for k, v in rates.items()}
    print()
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}; LViT-T {args.img_size}x{args.img_size}, batch "
        f"{args.batch_size}, {len(samples)} real images from {Path(args.data).name}/{args.split}, "
        f"{args.rounds} interleaved rounds x {args.steps} steps, text model {cached.model_id} ({cached.dim}-d)"
    )
    print()
    print("| text features | median images/s | min | max | text cost per sample |")
    print("|---|---|---|---|---|")
    print(
        f"| cached (ours) | {med['cached']:.3f} | {min(rates['cached']):.3f} | {max(rates['cached']):.3f} | "
        f"{per_hit * 1e6:.0f} µs (cache hit) |"
    )
    print(
        f"| recomputed per sample (reference) | {med['recomputed']:.3f} | {min(rates['recomputed']):.3f} | "
        f"{max(rates['recomputed']):.3f} | {per_recompute * 1e3:.1f} ms (text model forward) |"
    )
    print(f"| speed-up | {med['cached'] / med['recomputed']:.3f}x | | | |")
    fmed = {k: statistics.median(v) for k, v in feed.items()}
    print()
    print("| text features | data loader alone, median images/s | min | max |")
    print("|---|---|---|---|")
    for mode, label in (("cached", "cached (ours)"), ("recomputed", "recomputed per sample (reference)")):
        print(f"| {label} | {fmed[mode]:.1f} | {min(feed[mode]):.1f} | {max(feed[mode]):.1f} |")
    print(f"| speed-up | {fmed['cached'] / fmed['recomputed']:.1f}x | | |")


if __name__ == "__main__":
    main()
