"""Training throughput: the LViT authors' own trainer vs ours before and after the step's speed options.

Modes, all at the same batch size and image size, interleaved round by round (reference, ours-fp32,
ours-fast, reference, ...) so load changes on the shared machine hit every mode alike; images/s is measured
over whole steps including data loading, and the table reports medians over rounds and the paired ratio
(median over rounds of the per-round ratio):

- ``reference``: the authors' pipeline and step, run from a checkout of HUANGLIZI/LViT given with
  ``--reference-dir`` (nothing of it is copied here): their ``ImageToImage2D`` dataset with their
  ``RandomGenerator`` augmentation (OpenCV decode and resize of every sample, every epoch), their ``LViT``
  network (224 px only), their ``WeightedDiceBCE`` loss, Adam, and their ``train_one_epoch`` (forward, loss,
  backward, step, plus its per-step Dice/IoU bookkeeping). Their text comes from ``bert_embedding``
  (MXNet BERT-base, not installable here); a stand-in runs our bundled MiniLM per sample, uncached, padded to
  768-d, which is several times cheaper than BERT-base, so the reference's rate is flattered. ``timm``'s
  DropPath and two torchvision conversions are stood in by equivalents (DropPath is unused at its default
  rate 0). Needs ``pip install pandas opencv-python-headless ml-collections torchinfo`` (what their
  modules import). Runs on the CPU: their ``.cuda()`` calls are made no-ops.
- ``ours-fp32``: ``ml.train.Trainer.train_step`` as it was before the speed options (float32, NCHW, Adam
  looping over tensors) on our ``LViTDataset`` (decoded once, cached text features).
- ``ours-fast``: the same with ``TrainConfig``'s defaults: channels-last, fused Adam, and bf16 autocast where
  the CPU has AMX-BF16 (``ml.train.training_dtype``).
- ``ours-bf16`` (``--bf16``): ``ours-fast`` with bf16 autocast forced (``TrainConfig(precision="bf16")``), for
  CPUs where the default keeps float32 (AVX512-BF16 without AMX).
- ``ours-compile`` (``--compile``): ``ours-fast`` + ``torch.compile``; its compile time is reported apart.

Also the data loaders alone (no model): images/s each pipeline can deliver.

    OMP_NUM_THREADS=1 python bench/bench_train_throughput.py --reference-dir ../LViT --data ../shared/data/monuseg \\
        --img-size 224 --batch-size 2 --rounds 5 --steps 3 --threads 1
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.config import LViTConfig  # noqa: E402
from ml.data import scan_split  # noqa: E402
from ml.serving import cpu_features  # noqa: E402
from ml.text import TextEmbedder  # noqa: E402
from ml.train import TrainConfig, Trainer  # noqa: E402

# ------------------------------------------------------------------------------------ the reference trainer


def _install_stand_ins(embedder: TextEmbedder) -> None:
    """Modules the reference imports that cannot be installed next to torch 2.13 here."""

    class BertEmbedding:  # bert_embedding.BertEmbedding: sentence list -> [(tokens, [768-d vector per token])]
        def __call__(self, sentences: list[str]) -> list[tuple[list[str], list[np.ndarray]]]:
            out = []
            for s in sentences:
                feats = embedder.embed(s)  # (L, 384), computed every call (no cache)
                feats = np.concatenate([feats, feats], axis=1)  # 768-d like BERT-base
                out.append((s.split(), list(feats)))
            return out

    bert = types.ModuleType("bert_embedding")
    bert.BertEmbedding = BertEmbedding
    sys.modules["bert_embedding"] = bert

    class DropPath(nn.Module):  # timm.models.layers.DropPath (stochastic depth)
        def __init__(self, p: float = 0.0) -> None:
            super().__init__()
            self.p = p

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p == 0.0:
                return x
            keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= self.p
            return x * keep / (1 - self.p)

    timm = types.ModuleType("timm")
    timm_models = types.ModuleType("timm.models")
    timm_layers = types.ModuleType("timm.models.layers")
    timm_layers.DropPath = DropPath
    timm.models = timm_models
    timm_models.layers = timm_layers
    sys.modules.update({"timm": timm, "timm.models": timm_models, "timm.models.layers": timm_layers})

    from PIL import Image

    def to_pil_image(arr: np.ndarray) -> Image.Image:
        arr = np.asarray(arr)
        return Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)

    def to_tensor(pic: Any) -> torch.Tensor:
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div(255.0)

    class Compose:
        def __init__(self, transforms: list[Any]) -> None:
            self.transforms = transforms

        def __call__(self, x: Any) -> Any:
            for t in self.transforms:
                x = t(x)
            return x

    class ToTensor:
        def __call__(self, pic: Any) -> torch.Tensor:
            return to_tensor(pic)

    tv = types.ModuleType("torchvision")
    tvt = types.ModuleType("torchvision.transforms")
    tvf = types.ModuleType("torchvision.transforms.functional")
    tvf.to_pil_image, tvf.to_tensor = to_pil_image, to_tensor
    tvt.Compose, tvt.ToTensor, tvt.functional = Compose, ToTensor, tvf
    tv.transforms = tvt
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tvt, "torchvision.transforms.functional": tvf})


class _NoWriter:
    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass


class ReferenceTrainer:
    """The authors' dataset, network, loss and ``train_one_epoch`` on the CPU."""

    def __init__(self, ref_dir: Path, data: Path, img_size: int, batch_size: int, embedder: TextEmbedder) -> None:
        if img_size != 224:
            raise SystemExit("the reference LViT is built for 224x224 only; use --img-size 224")
        _install_stand_ins(embedder)
        sys.path.insert(0, str(ref_dir))
        torch.Tensor.cuda = lambda self, *a, **k: self  # their loop calls .cuda(); run it on the CPU
        self.config = importlib.import_module("Config")
        self.config.batch_size = batch_size
        self.config.tensorboard = False
        self.config.print_frequency = 10**9
        dataset_mod = importlib.import_module("Load_Dataset")
        utils = importlib.import_module("utils")
        self.loop = importlib.import_module("Train_one_epoch")
        lvit = importlib.import_module("nets.LViT")
        train_dir = str(data / "Train_Folder") + "/"
        text = utils.read_text(train_dir + "Train_text.xlsx")
        transform = dataset_mod.RandomGenerator(output_size=[img_size, img_size])
        self.dataset = dataset_mod.ImageToImage2D(train_dir, "MoNuSeg", text, transform, image_size=img_size)
        self.model = lvit.LViT(self.config.get_CTranS_config(), n_channels=3, n_classes=1)
        self.model.train()
        self.criterion = utils.WeightedDiceBCE(dice_weight=0.5, BCE_weight=0.5)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.batch_size = batch_size
        self.logger = logging.getLogger("reference")
        self.rng = np.random.default_rng(0)

    def loader(self, n: int, workers: int) -> DataLoader:
        idx = self.rng.choice(len(self.dataset), size=n, replace=n > len(self.dataset)).tolist()
        return DataLoader(Subset(self.dataset, idx), batch_size=self.batch_size, shuffle=True, num_workers=workers)

    def run(self, steps: int, workers: int) -> float:
        loader = self.loader(steps * self.batch_size, workers)
        start = time.perf_counter()
        self.loop.train_one_epoch(
            loader, self.model, self.criterion, self.optimizer, _NoWriter(), 0, None, "LViT", self.logger
        )
        return steps * self.batch_size / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------ ours


def our_trainer(
    args: argparse.Namespace, embedder: TextEmbedder, fast: bool, compile: bool = False, precision: str = "auto"
) -> Trainer:
    samples = scan_split(args.data, "Train")
    in_channels = 3 if Path(args.data).name == "monuseg" else 1
    model_cfg = LViTConfig(img_size=args.img_size, in_channels=in_channels, text_dim=embedder.dim)
    speed = (
        {"precision": precision} if fast else {"precision": "fp32", "channels_last": False, "fused_optimizer": False}
    )
    cfg = TrainConfig(
        out_dir=str(REPO / "bench" / "out" / "throughput"),
        batch_size=args.batch_size,
        num_workers=args.workers,
        seed=0,
        compile=compile,
        save_best=False,
        save_last=False,
        **speed,
    )
    trainer = Trainer(cfg, model_cfg, samples, samples[:1], text_embedder=embedder)
    trainer.train_set.preload()
    return trainer


def our_rate(trainer: Trainer, steps: int, epoch: int) -> float:
    trainer.net.train()
    trainer.train_set.set_epoch(epoch)
    it = iter(trainer.train_loader)
    n = 0
    start = time.perf_counter()
    for _ in range(steps):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(trainer.train_loader)
            batch = next(it)
        trainer.train_step(batch)
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - start)


def loader_rate(loader: DataLoader, batches: int) -> float:
    n, it = 0, iter(loader)
    start = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        first = batch[0] if isinstance(batch, list | tuple) else batch
        n += first["image"].shape[0]
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference-dir", type=Path, help="a checkout of HUANGLIZI/LViT (omit: ours only)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "monuseg")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="training steps per mode per round")
    p.add_argument("--loader-batches", type=int, default=8)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers for every mode")
    p.add_argument("--compile", action="store_true", help="also time ours-fast + torch.compile")
    p.add_argument(
        "--bf16", action="store_true", help="also time ours-fast with bf16 autocast forced (whatever the CPU's default)"
    )
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", type=Path, help="append the raw per-round rates here (JSON line)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    embedder = TextEmbedder(length=10)
    uncached = TextEmbedder(length=10, memory_cache_size=0)
    uncached.embed("warm up")

    modes: dict[str, Any] = {}
    if args.reference_dir is not None:
        modes["reference"] = ReferenceTrainer(args.reference_dir, args.data, args.img_size, args.batch_size, uncached)
    modes["ours-fp32"] = our_trainer(args, embedder, fast=False)
    modes["ours-fast"] = our_trainer(args, embedder, fast=True)
    if args.bf16:
        modes["ours-bf16"] = our_trainer(args, embedder, fast=True, precision="bf16")
    compile_s = None
    if args.compile:
        modes["ours-compile"] = our_trainer(args, embedder, fast=True, compile=True)
        start = time.perf_counter()
        our_rate(modes["ours-compile"], 1, 0)
        compile_s = time.perf_counter() - start

    def step(mode: str, trainer: Any, steps: int, r: int) -> float:
        if mode == "reference":
            return trainer.run(steps, args.workers)
        return our_rate(trainer, steps, r)

    for mode, trainer in modes.items():  # warm-up step each (first-call allocations)
        step(mode, trainer, 1, 0)
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode, trainer in modes.items():
            rates[mode].append(step(mode, trainer, args.steps, r + 1))
        print(f"round {r + 1}: " + "  ".join(f"{m} {v[-1]:.3f}" for m, v in rates.items()), flush=True)

    feeds: dict[str, list[float]] = {}
    for _ in range(3):
        if "reference" in modes:
            ref_loader = modes["reference"].loader(args.loader_batches * args.batch_size, args.workers)
            feeds.setdefault("reference", []).append(loader_rate(ref_loader, args.loader_batches))
        feeds.setdefault("ours", []).append(loader_rate(modes["ours-fast"].train_loader, args.loader_batches))

    base = "reference" if "reference" in modes else "ours-fp32"
    load = " / ".join(f"{x:.1f}" for x in __import__("os").getloadavg())
    print()
    print(
        f"machine: {platform.machine()}, CPU features: {cpu_features().summary()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), load average {load}; LViT-T {args.img_size}px, batch "
        f"{args.batch_size}, {Path(args.data).name}/Train, {args.rounds} interleaved rounds x {args.steps} steps, "
        f"{args.workers} loader workers"
    )
    print()
    print(f"| trainer | median images/s | min | max | paired ratio vs {base} |")
    print("|---|---|---|---|---|")
    for mode, v in rates.items():
        ratio = statistics.median(a / b for a, b in zip(v, rates[base], strict=True))
        print(f"| {mode} | {statistics.median(v):.3f} | {min(v):.3f} | {max(v):.3f} | {ratio:.2f}x |")
    if compile_s is not None:
        print(f"\ntorch.compile: first step (compilation) took {compile_s:.0f} s")
    print()
    print("| data loader alone | median images/s | min | max |")
    print("|---|---|---|---|")
    for mode, v in feeds.items():
        print(f"| {mode} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with args.json.open("a") as fh:
            fh.write(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rates": rates, "feeds": feeds}))
            fh.write("\n")


if __name__ == "__main__":
    main()
