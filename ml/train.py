"""Training: supervised and semi-supervised LViT (EPI pseudo-labels + LV loss), single process or DDP.

The loop in :meth:`Trainer.fit` reads top to bottom: per epoch, refresh the pseudo-labels (semi-supervised
epochs only), train one epoch, step the LR schedule, validate, keep the best checkpoint, report, and stop
early when validation Dice has not improved for ``patience`` epochs.

Semi-supervised (the paper's method, section III-B/C): the first ``prototype_epochs`` epochs train on the
labeled cases only (the prototype). From then on, each epoch starts by predicting every unlabeled case
under ``torch.no_grad()`` (eval mode, no augmentation) and folding the prediction into its EPI map
(``P_t = β·P_{t-1} + (1-β)·P̂_t``); each step then trains on a labeled batch and an unlabeled batch:
``L = L_sup + unsup_weight·(0.5·Dice + 0.5·BCE vs the EPI map + alpha·L_LV)``.

Multi-GPU: start with ``torchrun --nproc_per_node=N -m ml train ...``; ``WORLD_SIZE`` > 1 switches on
``init_process_group`` (NCCL on GPU, gloo on CPU), ``DistributedSampler`` and DDP. Validation,
checkpoints and progress events happen on rank 0; its decision to stop is broadcast.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from ml.config import LViTConfig
from ml.data import AUGMENT_MODES, LViTDataset, Sample, load_lv_templates, load_mask, scan_split, split_labeled
from ml.epi import EPIStore, beta_for_updates
from ml.laterality import is_negative
from ml.losses import EMPTY, DiceBCELoss, LVLoss, lv_bank_select, lv_cosine_loss
from ml.metrics import MetricAccumulator, MetricSummary
from ml.models import build_model
from ml.serving import cpu_features
from ml.text import TextEmbedder, pool_words
from ml.zones import pseudo_label_gate

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]


@dataclass
class TrainConfig:
    """Everything a training run needs besides the model config and the samples; written as JSON next to
    the outputs (``train_config.json``).

    Defaults are the reference settings for MoNuSeg (lr 1e-3; use 3e-4 for QaTa-like chest X-rays).
    """

    out_dir: str = "runs/lvit"
    epochs: int = 200
    batch_size: int = 2
    lr: float = 1e-3
    weight_decay: float = 0.0
    t0: int = 10  # CosineAnnealingWarmRestarts period in epochs
    eta_min: float = 1e-4
    patience: int = 50  # early stopping: epochs without val Dice improvement
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # fp16 mixed precision on CUDA when precision is "auto" (ignored on CPU)
    # speed of the step (same model, loss and data; measured in docs/results.md, "Training throughput")
    precision: str = "auto"  # "auto" | "fp32" | "bf16": autocast dtype of the forward, see training_dtype()
    channels_last: bool = True  # NHWC activations and weights for the convolutions (oneDNN / cuDNN fast paths)
    fused_optimizer: bool = True  # Adam as one fused kernel over all parameters instead of a loop per tensor
    compile: bool = False  # torch.compile the network for training (compiles at the first step)
    num_workers: int = 0
    augment: bool = True
    # "consistent": mirrors swap left/right (upper/lower) in the sentence, no 90-degree rotations (ml.laterality);
    # "reference": the authors' rot90 + flip with the sentence unchanged (paper reproduction)
    augment_mode: str = "consistent"
    # probability that a labeled training item's report is blanked (no words, no zone prior), so that a model which
    # reads the report also segments a case without one (see ml.data.LViTDataset); 0 = the paper
    report_dropout: float = 0.0
    # semi-supervised (active only when unlabeled samples are given)
    prototype_epochs: int = 10  # labeled-only epochs before pseudo-labels are used
    use_epi: bool = True  # False: the pseudo-label is the current prediction alone (beta = 0)
    # None: the β rule, ml.epi.beta_for_updates (the starting map keeps epi_residual of the weight by the end of the
    # run's EMA updates); 0.99 is the paper's setting
    epi_beta: float | None = None
    epi_residual: float = 0.05
    pseudo_label: str = "soft"  # "soft": the EPI probabilities; "hard": thresholded at 0.5
    # c in (0.5, 1): only pixels whose pseudo-label is >= c or <= 1 - c enter the unsupervised loss, as hard 0/1
    # targets (the confidence mask of FixMatch, Sohn et al. 2020, on the EPI map); 0: every pixel, as pseudo_label says
    pseudo_confidence: float = 0.0
    # the report corrects the pseudo-labels: each prediction is multiplied by the report's claimed-zone map
    # (ml.zones.zone_prior channel 0, soft edges) before it enters the EPI map, so a lung zone the report does not
    # name, or any pixel of a negative report, is background; free-text reports (no prior) pass unchanged
    pseudo_zone_gate: bool = False
    unsup_weight: float = 1.0
    # epochs over which the unsupervised weight rises from ~0 to unsup_weight after the prototype, along the sigmoid
    # ramp exp(-5 (1 - t)^2) of Laine & Aila (2017) / Tarvainen & Valpola (2017): the first pseudo-labels come from a
    # prototype trained on few labels, and at full weight a poor prototype's maps can pull the model down (measured:
    # docs/results.md, "25 % of Train labeled"). 0 = full weight from the first semi-supervised epoch (the paper)
    unsup_rampup_epochs: int = 0
    # The equal-steps control of the semi-supervised ablation: the semi-supervised schedule (prototype epochs, then
    # max(labeled, unlabeled) batches per epoch) with the unlabeled half removed: no pseudo-label passes, no
    # unsupervised loss, the same labeled batches and optimiser steps as the EPI run of the same seed.
    labeled_only_control: bool = False
    lv_alpha: float = 0.1
    lv_bank: str = "labeled"  # "labeled" (the labeled cases), "none", or a folder of LV templates
    lv_mirror: bool = True  # mirror template masks left-right (patient-side text), see ml.data
    # text features
    text_model: str | None = None  # local BERT-family directory; None = the bundled MiniLM
    text_cache_dir: str | None = None
    # bookkeeping
    save_best: bool = True  # best.pt (weights + configs) whenever val Dice improves
    save_last: bool = True  # last.pt (+ optimizer/scheduler/scaler state) every epoch, for resume

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "t0", "patience")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.eta_min < 0:
            raise ValueError(f"lr must be > 0 and eta_min >= 0, got lr={self.lr}, eta_min={self.eta_min}")
        if self.epi_beta is not None and not 0.0 <= self.epi_beta < 1.0:
            raise ValueError(f"epi_beta must be in [0, 1) or None (the β rule), got {self.epi_beta}")
        if not 0.0 < self.epi_residual < 1.0:
            raise ValueError(f"epi_residual must be in (0, 1), got {self.epi_residual}")
        if self.augment_mode not in AUGMENT_MODES:
            raise ValueError(f"augment_mode must be one of {AUGMENT_MODES}, got {self.augment_mode!r}")
        if not 0.0 <= self.report_dropout < 1.0:
            raise ValueError(f"report_dropout must be in [0, 1), got {self.report_dropout}")
        if self.pseudo_label not in ("soft", "hard"):
            raise ValueError(f"pseudo_label must be 'soft' or 'hard', got {self.pseudo_label!r}")
        if self.pseudo_confidence != 0.0 and not 0.5 < self.pseudo_confidence < 1.0:
            raise ValueError(f"pseudo_confidence must be 0 (off) or in (0.5, 1), got {self.pseudo_confidence}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if min(self.prototype_epochs, self.num_workers, self.lv_alpha, self.unsup_weight, self.unsup_rampup_epochs) < 0:
            raise ValueError(
                "prototype_epochs, num_workers, lv_alpha, unsup_weight and unsup_rampup_epochs must be >= 0"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved_epi_beta(self, *, continuing: bool) -> float:
        """The β this run uses: ``epi_beta`` when set; else the β rule for the EMA updates the run will make. One
        update per semi-supervised epoch (``epochs - prototype_epochs``); when the run starts from no maps
        (``continuing`` False) the first of them only stores P_0. Without EPI (``use_epi`` False): 0."""
        if not self.use_epi:
            return 0.0
        if self.epi_beta is not None:
            return self.epi_beta
        updates = max(0, self.epochs - self.prototype_epochs) - (0 if continuing else 1)
        return beta_for_updates(updates, self.epi_residual)

    def unsup_weight_at(self, epoch: int) -> float:
        """The unsupervised loss weight in ``epoch``: 0 in the prototype epochs, then ``unsup_weight`` times the
        sigmoid ramp over ``unsup_rampup_epochs`` (the first semi-supervised epoch is ramp position 1 of n)."""
        if epoch < self.prototype_epochs:
            return 0.0
        if self.unsup_rampup_epochs == 0:
            return self.unsup_weight
        t = min(1.0, (epoch - self.prototype_epochs + 1) / self.unsup_rampup_epochs)
        return self.unsup_weight * math.exp(-5.0 * (1.0 - t) ** 2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {sorted(unknown)}")
        return cls(**data)


@dataclass
class FitResult:
    best_dice: float
    best_epoch: int
    epochs_run: int
    stopped: str  # "completed", "early_stopping", "cancelled"
    best_checkpoint: str | None
    history: list[dict[str, Any]] = field(default_factory=list)


def folder_samples(
    data_root: str | os.PathLike[str],
    train_split: str = "Train",
    val_split: str = "Val",
    labeled_fraction: float = 1.0,
    seed: int = 0,
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(labeled train, unlabeled train, val) samples from an LViT-layout folder."""
    train = scan_split(data_root, train_split)
    val = scan_split(data_root, val_split)
    if labeled_fraction >= 1.0:
        return train, [], val
    labeled, unlabeled = split_labeled(train, labeled_fraction, seed)
    return labeled, unlabeled, val


def training_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the training forward (``None``: float32 throughout).

    ``"auto"``: float16 on CUDA when ``cfg.amp`` (with a gradient scaler); bfloat16 on CPUs with native bf16
    arithmetic, AMX-BF16 tiles or AVX512-BF16 dot products, where it measured ~2x faster per step with the same loss
    curve (docs/results.md, "Training throughput"); float32 on other CPUs (without native bf16 the emulation is
    slower than float32). Weights, optimizer state and losses stay float32 in every case.
    """
    if cfg.precision == "fp32":
        return None
    if cfg.precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.float16 if cfg.amp else None
    if device.type == "cpu" and cpu_features().bf16:
        return torch.bfloat16
    return None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return device


def _cycle(loader: DataLoader, sampler: DistributedSampler | None, epoch: int) -> Iterator[dict[str, Any]]:
    """Endless iteration over a loader, reshuffling (and re-seeding the sampler) on each pass."""
    rounds = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch * 1000 + rounds)
        yield from loader
        rounds += 1


class Trainer:
    """Trains one model on labeled (and optionally unlabeled) samples, validating on ``val``.

    Args:
        cfg: training settings.
        model_cfg: the network; carried by every checkpoint.
        train: labeled training samples.
        val: validation samples (labeled).
        unlabeled: unlabeled training samples; non-empty switches on the semi-supervised path.
        on_progress: called with event dicts (rank 0 only): ``type`` is one of ``start``, ``step``,
            ``pseudo_labels``, ``epoch``, ``done``; see :meth:`_emit` call sites for the keys.
        should_stop: polled before every epoch and step; returning True ends training at once (a partial
            epoch is dropped; ``last.pt`` keeps the last complete epoch for resuming).
        text_embedder: shared embedder (else one is built from ``cfg.text_model``/``cfg.text_cache_dir``).
        resume: path of a ``last.pt`` checkpoint to continue from (its EPI store is read from beside it).
        epi_store: existing EPI maps keyed by sample name, each ``img_size`` x ``img_size`` (e.g. the
            server's per-case maps from earlier rounds, resized); the trainer keeps updating it and its own
            ``beta`` applies. Default: a fresh store.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model_cfg: LViTConfig,
        train: Sequence[Sample],
        val: Sequence[Sample],
        unlabeled: Sequence[Sample] = (),
        *,
        on_progress: ProgressFn | None = None,
        should_stop: StopFn | None = None,
        text_embedder: TextEmbedder | None = None,
        resume: str | os.PathLike[str] | None = None,
        epi_store: EPIStore | None = None,
    ) -> None:
        if not train:
            raise ValueError("no labeled training samples")
        if not val:
            raise ValueError("no validation samples")
        if any(not s.labeled for s in val):
            raise ValueError("validation samples must be labeled")
        if model_cfg.n_classes != 1:
            raise ValueError(f"the trainer segments one foreground class; got n_classes={model_cfg.n_classes}")
        self.cfg = cfg
        self.model_cfg = model_cfg
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.out_dir = Path(cfg.out_dir)
        self._setup_distributed()
        self._seed_everything(cfg.seed + self.rank)

        # text features: needed by the text path and by the LV loss bank selection
        need_text = model_cfg.uses_text or (bool(unlabeled) and cfg.lv_alpha > 0 and cfg.lv_bank != "none")
        self.embedder = text_embedder
        if need_text and self.embedder is None:
            self.embedder = TextEmbedder(
                cfg.text_model, length=model_cfg.text_len, cache_dir=cfg.text_cache_dir, device="cpu"
            )
        mismatch = self.embedder is not None and (self.embedder.dim, self.embedder.length) != (
            model_cfg.text_dim,
            model_cfg.text_len,
        )
        if model_cfg.uses_text and mismatch:
            raise ValueError(
                f"text features are ({self.embedder.length}, {self.embedder.dim}) but the model expects "
                f"({model_cfg.text_len}, {model_cfg.text_dim}); set text_dim/text_len to match the embedder"
            )

        # data
        ds_args = {
            "image_size": model_cfg.img_size,
            "in_channels": model_cfg.in_channels,
            "text": self.embedder,
            "zones": model_cfg.uses_zones,
        }
        aug = {"augment": cfg.augment, "augment_mode": cfg.augment_mode}
        self.train_set = LViTDataset(train, seed=cfg.seed, report_dropout=cfg.report_dropout, **aug, **ds_args)
        self.val_set = LViTDataset(val, augment=False, **ds_args)
        self.semi = bool(unlabeled)
        self.unsup_weight = cfg.unsup_weight  # the current epoch's (cfg.unsup_weight_at), set by train_epoch
        self.epi_beta = cfg.resolved_epi_beta(continuing=epi_store is not None and len(epi_store) > 0)
        self.epi = epi_store if epi_store is not None else EPIStore(beta=self.epi_beta, seed=cfg.seed)
        self.epi.beta = self.epi_beta
        self.unlabeled_set = LViTDataset(unlabeled, seed=cfg.seed + 1, pseudo_labels=self.epi.get, **aug, **ds_args)
        # for pseudo-label passes; with the zone gate it always renders the report's prior (the gate's map)
        self.unlabeled_plain = LViTDataset(
            unlabeled, augment=False, **(ds_args | {"zones": model_cfg.uses_zones or cfg.pseudo_zone_gate})
        )
        self.unlabeled_plain._cache = self.unlabeled_set._cache  # same images, decoded once
        if cfg.num_workers > 0:  # workers are forked per epoch: decode once here so they inherit the images
            for ds in (self.train_set, self.val_set, self.unlabeled_set, self.unlabeled_plain):
                ds.preload()
        self.train_loader, self.train_sampler = self._loader(self.train_set, shuffle=True)
        self.unlabeled_loader, self.unlabeled_sampler = self._loader(self.unlabeled_set, shuffle=self.semi)

        # model, losses, optimisation
        self.model = build_model(model_cfg).to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net: nn.Module = self.model
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.sup_loss = DiceBCELoss(0.5, 0.5)
        self.lv_loss = (
            self._build_lv_loss(train) if self.semi and cfg.lv_alpha > 0 and not cfg.labeled_only_control else None
        )
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cfg.fused_optimizer
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.optimizer, T_0=cfg.t0, eta_min=cfg.eta_min
        )
        self.autocast_dtype = training_dtype(cfg, self.device)
        self.use_amp = self.autocast_dtype == torch.float16  # float16 needs loss scaling; bfloat16 does not
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp)

        # state
        self.start_epoch = 0
        self.best_dice = -math.inf
        self.best_epoch = -1
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        if resume is not None:
            self._resume(Path(resume))

    # ================================================================== main loop

    def fit(self) -> FitResult:
        cfg = self.cfg
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._write_json(
                "train_config.json",
                {"train": cfg.to_dict(), "model": self.model_cfg.to_dict(), "epi_beta": self.epi.beta},
            )
        self._emit(
            "start",
            epochs=cfg.epochs,
            start_epoch=self.start_epoch,
            steps_per_epoch=self._steps_per_epoch(semi=False),
            n_labeled=len(self.train_set),
            n_unlabeled=len(self.unlabeled_set),
            n_val=len(self.val_set),
            device=str(self.device),
            world_size=self.world_size,
            epi_beta=self.epi.beta if self.semi else None,
        )
        stopped, completed = "completed", 0
        for epoch in range(self.start_epoch, cfg.epochs):
            if self._agree(self._stop_requested()):
                stopped = "cancelled"
                break
            started = time.perf_counter()
            semi_epoch = self.semi and epoch >= cfg.prototype_epochs
            pseudo = self.update_pseudo_labels(epoch) if semi_epoch and not cfg.labeled_only_control else None
            losses, cancelled = self.train_epoch(epoch, semi_epoch)
            if cancelled:  # the partial epoch is dropped: last.pt still holds the last complete epoch
                stopped = "cancelled"
                break
            self.scheduler.step()
            val = self.validate()
            improved = self._track_best(val, epoch)
            record = {
                "epoch": epoch,
                "losses": losses,
                "val": val.to_dict(),
                "lr": self.optimizer.param_groups[0]["lr"],
                "improved": improved,
                "semi": semi_epoch,
                "unsup_weight": self.unsup_weight if semi_epoch and not cfg.labeled_only_control else 0.0,
                "pseudo": pseudo,
                "seconds": time.perf_counter() - started,
            }
            self.history.append(record)
            self._save_checkpoints(epoch, improved)
            self._emit("epoch", **record, best_dice=self.best_dice, best_epoch=self.best_epoch, epochs=cfg.epochs)
            completed += 1
            if self._agree(self.bad_epochs >= cfg.patience):
                stopped = "early_stopping"
                break
        result = FitResult(
            best_dice=self.best_dice,
            best_epoch=self.best_epoch,
            epochs_run=completed,
            stopped=stopped,
            best_checkpoint=str(self.out_dir / "best.pt") if self.best_epoch >= 0 and cfg.save_best else None,
            history=self.history,
        )
        if self.is_main:
            self._write_json("result.json", asdict(result))
        self._emit(
            "done",
            stopped=stopped,
            best_dice=self.best_dice,
            best_epoch=self.best_epoch,
            best_checkpoint=result.best_checkpoint,
        )
        return result

    # ================================================================== hooks

    def train_epoch(self, epoch: int, semi: bool) -> tuple[dict[str, float], bool]:
        """One epoch of steps; returns (mean named losses, cancelled)."""
        self.net.train()
        self.train_set.set_epoch(epoch)
        self.unlabeled_set.set_epoch(epoch)
        steps = self._steps_per_epoch(semi)
        labeled = _cycle(self.train_loader, self.train_sampler, epoch)
        use_unlabeled = semi and not self.cfg.labeled_only_control
        unlabeled = _cycle(self.unlabeled_loader, self.unlabeled_sampler, epoch) if use_unlabeled else None
        self.unsup_weight = self.cfg.unsup_weight_at(epoch)
        totals: dict[str, float] = {}
        for step in range(steps):
            if step > 0 and self._agree(self._stop_requested()):  # step 0: checked by fit() just before
                return self._means(totals, step), True
            losses = self.train_step(next(labeled), next(unlabeled) if unlabeled is not None else None)
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + v
            self._emit("step", epoch=epoch, step=step, steps=steps, losses=losses)
        return self._means(totals, steps), False

    def train_step(self, batch: dict[str, Any], unlabeled: dict[str, Any] | None = None) -> dict[str, float]:
        """One optimisation step on a labeled batch (and an unlabeled batch); returns named losses."""
        images = batch["image"].to(self.device, non_blocking=True)  # (B, C, S, S)
        masks = batch["mask"].to(self.device, non_blocking=True)  # (B, 1, S, S)
        text = batch.get("text")
        zones = batch.get("zones")
        n = images.shape[0]
        if unlabeled is not None:  # one forward over both halves (shared BatchNorm statistics)
            images = torch.cat([images, unlabeled["image"].to(self.device, non_blocking=True)])
            if text is not None:
                text = torch.cat([text, unlabeled["text"]])
            if zones is not None:
                zones = torch.cat([zones, unlabeled["zones"]])
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = self._forward(self.net, images, text, zones)  # (B', 1, S, S)
        logits = logits.float()
        sup = self.sup_loss.components(logits[:n], masks)
        loss = sup["loss"]
        out = {"sup_dice": sup["dice"].item(), "sup_bce": sup["bce"].item()}
        if unlabeled is not None:
            if not all(unlabeled["has_pseudo"]):
                missing = [name for name, ok in zip(unlabeled["name"], unlabeled["has_pseudo"], strict=True) if not ok]
                raise RuntimeError(f"no pseudo-label for unlabeled cases {missing}")
            pseudo = unlabeled["pseudo"].to(self.device, non_blocking=True)  # (Bu, 1, S, S)
            confident = None
            if self.cfg.pseudo_confidence:
                c = self.cfg.pseudo_confidence
                confident = ((pseudo >= c) | (pseudo <= 1.0 - c)).float()
                out["unsup_confident"] = confident.mean().item()
            if self.cfg.pseudo_label == "hard" or confident is not None:
                pseudo = (pseudo >= 0.5).float()
            unsup = self.sup_loss.components(logits[n:], pseudo, weight=confident)
            unsup_loss = unsup["loss"]
            out |= {"unsup_dice": unsup["dice"].item(), "unsup_bce": unsup["bce"].item()}
            if self.lv_loss is not None:  # targets chosen per case, transformed with the image (_build_lv_loss)
                lv = lv_cosine_loss(logits[n:], unlabeled["lv_target"].to(self.device, non_blocking=True))
                unsup_loss = unsup_loss + self.cfg.lv_alpha * lv
                out["lv"] = lv.item()
            loss = loss + self.unsup_weight * unsup_loss
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        out["loss"] = loss.item()
        return out

    @torch.no_grad()
    def update_pseudo_labels(self, epoch: int) -> dict[str, Any]:
        """Predict every unlabeled case (eval mode, no augmentation) and fold it into its EPI map.

        Every rank runs the same pass (identical weights), so all ranks hold the same store. Returns a
        summary; when the unlabeled samples still know their hidden masks (benchmarks), it also reports
        the pseudo-labels' Dice against them (a diagnostic; training never reads those masks).
        """
        self.model.eval()
        loader = DataLoader(
            self.unlabeled_plain, batch_size=self.cfg.batch_size, shuffle=False, num_workers=self.cfg.num_workers
        )
        quality = MetricAccumulator()
        for batch in loader:
            zones = batch.get("zones")  # (B, ZONE_CHANNELS, S, S) or None; a model without zone input ignores it
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                logits = self._forward(self.model, batch["image"].to(self.device), batch.get("text"), zones)
            probs = torch.sigmoid(logits.float())
            probs = probs.float().cpu().numpy()[:, 0]  # (B, S, S)
            if self.cfg.pseudo_zone_gate:
                probs = probs * pseudo_label_gate(zones.numpy())
            for name, p in zip(batch["name"], probs, strict=True):
                maps = self.epi.update(name, p)
                sample = self.unlabeled_plain.samples[self._unlabeled_index[name]]
                if sample.mask_path is not None:
                    gt = load_mask(sample.mask_path, self.model_cfg.img_size)
                    quality.update(maps[None], gt[None].astype(np.float32), [name])
        self.model.train()
        summary: dict[str, Any] = {"n": len(self.epi), "iterations": self.epi.count(next(iter(self.epi), ""))}
        if len(quality):
            summary["pseudo_dice"] = quality.compute().dice
        if self.is_main:
            self.epi.save(self.out_dir / "epi.npz")
        self._emit("pseudo_labels", epoch=epoch, **summary)
        return summary

    @torch.no_grad()
    def validate(self) -> MetricSummary:
        """Per-image Dice/IoU at 0.5 on the validation set (rank 0 only; 224x224, as the reference)."""
        if not self.is_main:
            return MetricSummary(math.nan, math.nan, math.nan, math.nan, 0, 0)
        return evaluate(self.model, self.model_cfg, self.val_set, self.device, self.cfg.batch_size)

    # ================================================================== pieces

    def _forward(self, net: nn.Module, images: Tensor, text: Tensor | None, zones: Tensor | None = None) -> Tensor:
        return forward_model(net, self.model_cfg, images, text, zones)

    def _build_lv_loss(self, labeled: Sequence[Sample]) -> LVLoss | None:
        """The LV bank (text features and masks at the model's size) and, per unlabeled case, its target.

        Each case's entry is chosen once, from its un-augmented, whole sentence (:func:`ml.losses.lv_bank_select`;
        a negative report gets the empty mask); the dataset then transforms that mask with the same geometry as
        the image (``lv_target`` in each unlabeled item), so the target always matches the augmented logits.
        """
        cfg, size = self.cfg, self.model_cfg.img_size
        if cfg.lv_bank == "none":
            return None
        if cfg.lv_bank == "labeled":
            sentences = [s.sentence for s in labeled]
            masks = np.stack([self.train_set._load(i)[1] > 0 for i in range(len(labeled))])
        else:
            pairs = load_lv_templates(cfg.lv_bank, mirror=cfg.lv_mirror)
            sentences = [p[0] for p in pairs]
            masks = np.stack(
                [
                    np.asarray(
                        torch.nn.functional.interpolate(
                            torch.from_numpy(m.astype(np.float32))[None, None], size=(size, size), mode="nearest"
                        )[0, 0]
                    )
                    > 0
                    for _, m in pairs
                ]
            )
        assert self.embedder is not None
        self._lv_sentences = list(sentences)
        bank_text = torch.from_numpy(_sentence_features(self.embedder, sentences))  # (N, D), whole sentences
        bank_negative = torch.tensor([is_negative(t) for t in sentences])
        cases = self.unlabeled_plain.samples
        index = lv_bank_select(
            torch.from_numpy(_sentence_features(self.embedder, [c.sentence for c in cases])),
            torch.tensor([is_negative(c.sentence) for c in cases]),
            bank_text,
            bank_negative,
        )
        self.unlabeled_set.lv_targets = _BankTargets(masks, {c.name: int(i) for c, i in zip(cases, index, strict=True)})
        return LVLoss(bank_text, torch.from_numpy(masks.astype(np.float32))).to(self.device)

    @property
    def _unlabeled_index(self) -> dict[str, int]:
        if not hasattr(self, "_unlabeled_index_cache"):
            self._unlabeled_index_cache = {s.name: i for i, s in enumerate(self.unlabeled_plain.samples)}
        return self._unlabeled_index_cache

    def _loader(self, dataset: LViTDataset, shuffle: bool) -> tuple[DataLoader, DistributedSampler | None]:
        sampler = None
        if self.distributed and len(dataset):
            sampler = DistributedSampler(dataset, shuffle=shuffle, seed=self.cfg.seed)
        generator = torch.Generator().manual_seed(self.cfg.seed)
        loader = DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=generator,
            drop_last=False,
        )
        return loader, sampler

    def _steps_per_epoch(self, semi: bool) -> int:
        steps = len(self.train_loader)
        if semi:
            steps = max(steps, len(self.unlabeled_loader))
        return steps

    def _track_best(self, val: MetricSummary, epoch: int) -> bool:
        if val.dice > self.best_dice:
            self.best_dice, self.best_epoch, self.bad_epochs = val.dice, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def _save_checkpoints(self, epoch: int, improved: bool) -> None:
        if not self.is_main or not (self.cfg.save_best or self.cfg.save_last):
            return
        from ml.predict import save_checkpoint

        extra = {
            "epoch": epoch,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "val": self.history[-1]["val"] if self.history else None,
            "train_config": self.cfg.to_dict(),
        }
        if improved and self.cfg.save_best:
            save_checkpoint(self.out_dir / "best.pt", self.model, self.model_cfg, **extra)
        if self.cfg.save_last:
            save_checkpoint(
                self.out_dir / "last.pt",
                self.model,
                self.model_cfg,
                **extra,
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                bad_epochs=self.bad_epochs,
                history=self.history,
            )

    def _resume(self, path: Path) -> None:
        from ml.predict import load_checkpoint

        ckpt = load_checkpoint(path, map_location=self.device)
        if LViTConfig.from_dict(ckpt["config"]) != self.model_cfg:
            raise ValueError(f"checkpoint {path} was trained with a different model config")
        self.model.load_state_dict(ckpt["model"])
        extra = ckpt
        if "optimizer" not in extra:
            raise ValueError(f"{path} has no optimizer state; resume from last.pt, not best.pt")
        self.optimizer.load_state_dict(extra["optimizer"])
        self.scheduler.load_state_dict(extra["scheduler"])
        self.scaler.load_state_dict(extra["scaler"])
        self.start_epoch = int(extra["epoch"]) + 1
        self.best_dice = float(extra["best_dice"])
        self.best_epoch = int(extra["best_epoch"])
        self.bad_epochs = int(extra["bad_epochs"])
        self.history = list(extra.get("history") or [])
        epi_path = path.parent / "epi.npz"
        if self.semi and epi_path.is_file():
            self.epi = EPIStore.load(epi_path)
            self.unlabeled_set.pseudo_labels = self.epi.get

    def _stop_requested(self) -> bool:
        return bool(self.should_stop()) if self.should_stop is not None and self.is_main else False

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision, shared by every rank (a no-op without DDP)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def _emit(self, kind: str, **payload: Any) -> None:
        if self.on_progress is not None and self.is_main:
            self.on_progress({"type": kind, **payload})

    def _write_json(self, name: str, data: Any) -> None:
        path = self.out_dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=float))
        os.replace(tmp, path)

    @staticmethod
    def _means(totals: dict[str, float], steps: int) -> dict[str, float]:
        return {k: v / max(steps, 1) for k, v in totals.items()}

    def _setup_distributed(self) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.distributed = self.world_size > 1
        device = resolve_device(self.cfg.device)
        if self.distributed:
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            self.rank = dist.get_rank()
            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(device)
        else:
            self.rank = 0
        self.is_main = self.rank == 0
        self.device = device
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


class _BankTargets:
    """name -> the LV target mask (S, S) bool of an unlabeled case (the empty mask for :data:`EMPTY`); picklable
    for DataLoader workers."""

    def __init__(self, masks: np.ndarray, index: dict[str, int]) -> None:
        self.masks = masks
        self.index = index
        self.empty = np.zeros(masks.shape[1:], dtype=bool)

    def __call__(self, name: str) -> np.ndarray | None:
        i = self.index.get(name)
        if i is None:
            return None
        return self.empty if i == EMPTY else self.masks[i]


def _sentence_features(embedder: Any, sentences: Sequence[str]) -> np.ndarray:
    """Whole-sentence pooled features ``(N, D)``; an embedder without ``sentence_features`` pools its word features."""
    whole = getattr(embedder, "sentence_features", None)
    if callable(whole):
        return np.asarray(whole(list(sentences)), dtype=np.float32)
    return np.asarray(pool_words(embedder.embed_many(list(sentences))), dtype=np.float32)


def forward_model(
    net: nn.Module, model_cfg: LViTConfig, images: Tensor, text: Tensor | None, zones: Tensor | None = None
) -> Tensor:
    """Logits of any built model: text only to text models, the zone prior only to ``lvit_zones``."""
    if model_cfg.uses_zones:
        if zones is None:
            raise ValueError(f"{model_cfg.model_name} needs the zone prior (dataset built with zones=True)")
        zones = zones.to(images.device, non_blocking=True)
        if model_cfg.uses_text:
            return net(images, text.to(images.device, non_blocking=True), zones)
        return net(images, None, zones)
    if model_cfg.uses_text:
        return net(images, text.to(images.device, non_blocking=True))
    return net(images)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    model_cfg: LViTConfig,
    dataset: LViTDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 2,
    progress: bool = False,
) -> MetricSummary:
    """Per-image Dice and IoU at threshold 0.5 over a dataset (224x224 inputs and masks).

    Uses an accumulator so callers get mean, std, n and the number of empty-GT-and-empty-prediction
    images (scored 1.0, see :mod:`ml.metrics`).
    """
    return evaluate_detailed(model, model_cfg, dataset, device, batch_size, progress)[0]


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    model_cfg: LViTConfig,
    dataset: LViTDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 2,
    progress: bool = False,
) -> Iterator[tuple[Tensor, dict[str, Any]]]:
    """``(sigmoid probabilities on the CPU, the batch)`` for each batch of ``dataset`` in order, the model in eval
    mode (its training flag is restored afterwards): the loop every evaluation shares."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader: Any = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="eval", unit="batch", leave=False)
    try:
        for batch in loader:
            images = batch["image"].to(device)
            logits = forward_model(model, model_cfg, images, batch.get("text"), batch.get("zones"))
            yield torch.sigmoid(logits.float()).cpu(), batch
    finally:
        model.train(was_training)


def evaluate_detailed(
    model: nn.Module,
    model_cfg: LViTConfig,
    dataset: LViTDataset,
    device: torch.device | str = "cpu",
    batch_size: int = 2,
    progress: bool = False,
) -> tuple[MetricSummary, list[dict[str, Any]]]:
    """:func:`evaluate` plus the per-image rows (name, dice, iou, empty_both)."""
    acc = MetricAccumulator()
    for prob, batch in predict_batches(model, model_cfg, dataset, device, batch_size, progress):
        acc.update(prob, batch["mask"], list(batch["name"]))
    return acc.compute(), acc.per_image()


__all__ = [
    "FitResult",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "evaluate_detailed",
    "folder_samples",
    "forward_model",
    "predict_batches",
    "training_dtype",
]
