"""The text-steering quality grid: model x seed, one JSON line per finished run (bench/results/quality_grid.jsonl).

Models (``--models``):

* ``lvit_zones``: LViT-T + the report's lung-zone prior (``arch=lvit_zones``), app text length;
* ``lvit_zones_rd``: the same with report dropout 0.2 in training (a blank report, no words and no prior, for a fifth
  of the labeled items), so that a case without a report still gets a mask;
* ``lvit_app``: LViT-T, the paper's network, app text length (covers the template's longest sentence);
* ``lvit_l10``: LViT-T, the paper's network, L = 10 words (the reproduction setting);
* ``lvit_tw``: LViT-TW (no text);
* ``unet``: the paper's U-Net baseline.

Groups (``--groups``): ``cxr`` (covid_cxr Train -> Val, gray, lr 3e-4; no Test split here, so the final model is
scored on Val and the best-epoch Val Dice is marked as selected on that split), ``monuseg`` (Train -> Test, RGB,
lr 1e-3, the final model and the Val-selected best epoch both scored on Test), ``cxr-semi`` (25 % of covid_cxr
Train labeled, the rest unlabeled; every variant runs the same semi-supervised schedule and optimiser steps:
``labeled_same_steps`` = the labeled batches alone (``TrainConfig.labeled_only_control``), ``pseudo`` = plain
pseudo-labels (the current prediction, no EMA), ``epi`` = EPI pseudo-labels, ``epi_lv`` = EPI + LV loss, ``epi_lv_ramp`` = EPI + LV loss with the unsupervised weight
ramped up over the first half of the semi-supervised epochs (``TrainConfig.unsup_rampup_epochs``); the model is
the one named by ``--semi-model``).

Every run: the same epochs, batch, LR schedule, augmentation and seed for every model; the row carries all settings,
per-epoch validation Dice, the final and best Dice, the text-steering measurement of :mod:`ml.steer` (Dice with the
true / swapped / empty report, on all images and on unilateral reports, and the foreground share on the named side),
steps and wall time. Resumable: a run whose key (group, model, variant, seed, budget) is already in the file is
skipped. Tables: ``python bench/quality_tables.py``.

    OMP_NUM_THREADS=2 python bench/quality_grid.py --groups cxr --models lvit_zones lvit_app lvit_l10 unet \\
        --seeds 0 1 2 --epochs 15 --img-size 112 --budget cpu112
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.config import LViTConfig  # noqa: E402
from ml.data import LViTDataset, scan_split, split_labeled  # noqa: E402
from ml.steer import text_sensitivity  # noqa: E402
from ml.text import TextEmbedder  # noqa: E402
from ml.train import TrainConfig, Trainer, evaluate  # noqa: E402

# The lung template's longest sentence (every zone named on both sides); the app's text length covers it.
LONGEST_REPORT = (
    "Bilateral pulmonary infection, multiple infected areas, upper middle lower left lung and upper middle lower "
    "right lung."
)


def app_text_len() -> int:
    """Words of the template's longest sentence, punctuation marks counted as words (as the text path counts)."""
    import re

    return len(re.findall(r"[^\W_]+|[^\w\s]|_", LONGEST_REPORT))


MODELS: dict[str, dict[str, Any]] = {
    "lvit_zones": {"arch": "lvit_zones", "with_text": True, "text_len": "app"},
    "lvit_zones_rd": {"arch": "lvit_zones", "with_text": True, "text_len": "app", "train": {"report_dropout": 0.2}},
    "lvit_app": {"arch": "lvit", "with_text": True, "text_len": "app"},
    "lvit_l10": {"arch": "lvit", "with_text": True, "text_len": 10},
    "lvit_tw": {"arch": "lvit", "with_text": False, "text_len": 10},
    "unet": {"arch": "unet", "with_text": False, "text_len": 10},
}
SEMI_VARIANTS = (
    "labeled_same_steps",
    "pseudo",
    "epi",
    "epi_lv",
    "epi_lv_ramp",
    "epi_lv_gate",
    "epi_lv_conf",
    "epi_lv_gate_conf",
)


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    for seed in args.seeds:  # seeds outermost: a cut-short grid still has complete seeds for every model
        for group in args.groups:
            if group in ("cxr", "monuseg"):
                runs += [{"group": group, "model": m, "variant": "supervised", "seed": seed} for m in args.models]
            elif group == "cxr-semi":
                runs += [
                    {"group": group, "model": args.semi_model, "variant": v, "seed": seed} for v in args.semi_variants
                ]
            else:
                raise SystemExit(f"unknown group {group}")
    if args.shard:  # "k/n": every n-th run starting at k, for n processes sharing one GPU
        k, n = (int(v) for v in args.shard.split("/"))
        runs = runs[k::n]
    return runs


def _git(*args: str) -> str:
    import subprocess

    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run_key(run: dict[str, Any], budget: str) -> str:
    return f"{run['group']}|{run['model']}|{run['variant']}|{run['seed']}|{budget}"


def execute(run: dict[str, Any], args: argparse.Namespace, embedders: dict[int, TextEmbedder]) -> dict[str, Any]:
    data = Path(args.data_root)
    group, seed = run["group"], run["seed"]
    if group == "monuseg":
        root, in_ch, lr, epochs = data / "monuseg", 3, 1e-3, args.epochs_monuseg or args.epochs
        train, val, test = scan_split(root, "Train"), scan_split(root, "Val"), scan_split(root, "Test")
    else:
        root, in_ch, lr, epochs = data / "covid_cxr", 1, 3e-4, args.epochs
        train, val, test = scan_split(root, "Train"), scan_split(root, "Val"), None
    if args.limit:
        train, val, test = train[: args.limit], val[: args.limit], (test[: args.limit] if test else None)
    unlabeled: list = []
    overrides: dict[str, Any] = {}
    if group == "cxr-semi":
        train, unlabeled = split_labeled(train, 0.25, seed=seed)
        # Every variant runs the same semi-supervised schedule (prototype epochs on the labeled cases, then
        # max(labeled, unlabeled) batches per epoch), so each takes the same optimiser steps on the same labeled
        # batches; they differ only in what the unlabeled half of a step contributes.
        prototype = max(1, epochs // 3)
        overrides = {"prototype_epochs": prototype, "lv_bank": str(data / "lv_loss")}
        overrides |= {
            "labeled_same_steps": {"labeled_only_control": True, "lv_alpha": 0.0},
            "pseudo": {"use_epi": False, "lv_alpha": 0.0},
            "epi": {"lv_alpha": 0.0},
            "epi_lv": {"lv_alpha": 0.1},
            "epi_lv_ramp": {"lv_alpha": 0.1, "unsup_rampup_epochs": max(1, (epochs - prototype) // 2)},
            "epi_lv_gate": {"lv_alpha": 0.1, "pseudo_zone_gate": True},
            "epi_lv_conf": {"lv_alpha": 0.1, "pseudo_confidence": 0.7},
            "epi_lv_gate_conf": {"lv_alpha": 0.1, "pseudo_zone_gate": True, "pseudo_confidence": 0.7},
        }[run["variant"]]
    spec = dict(MODELS[run["model"]])
    overrides |= spec.pop("train", {})
    text_len = app_text_len() if spec.pop("text_len") == "app" else 10
    embedder = embedders.setdefault(text_len, TextEmbedder(length=text_len, cache_dir=Path(args.run_dir) / "text"))
    model_cfg = LViTConfig(**spec, text_len=text_len, img_size=args.img_size, in_channels=in_ch, text_dim=embedder.dim)
    out_dir = Path(args.run_dir) / "runs" / run_key(run, args.budget).replace("|", "_")
    cfg = TrainConfig(
        out_dir=str(out_dir),
        epochs=epochs,
        batch_size=args.batch_size,
        lr=lr,
        seed=seed,
        device=args.device,
        patience=args.patience,
        num_workers=args.workers,
        save_best=False,
        save_last=False,
        **overrides,
    )
    torch.manual_seed(seed)
    best_state: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    steps = {"n": 0}

    pseudo_dice: list[float] = []  # each EPI update's map Dice against the hidden masks (a diagnostic)

    def on_progress(event: dict[str, Any]) -> None:
        if event["type"] == "step":
            steps["n"] += 1
        if event["type"] == "pseudo_labels" and "pseudo_dice" in event:
            pseudo_dice.append(round(event["pseudo_dice"], 4))
        if event["type"] == "epoch":
            history.append(
                {
                    "epoch": event["epoch"],
                    "loss": event["losses"].get("loss"),
                    "val_dice": event["val"]["dice"],
                    "seconds": event["seconds"],
                }
            )
            print(
                f"  epoch {event['epoch']:3d}  loss {event['losses'].get('loss', float('nan')):.4f}  "
                f"val dice {event['val']['dice']:.4f}  ({event['seconds']:.0f}s)",
                flush=True,
            )
            if event["improved"]:
                best_state["model"] = copy.deepcopy(trainer.model.state_dict())

    trainer = Trainer(cfg, model_cfg, train, val, unlabeled, on_progress=on_progress, text_embedder=embedder)
    started = time.perf_counter()
    result = trainer.fit()
    train_seconds = time.perf_counter() - started
    eval_samples = test if test is not None else val
    row: dict[str, Any] = dict(
        run,
        budget=args.budget,
        arch=model_cfg.arch,
        model_name=model_cfg.model_name,
        with_text=model_cfg.with_text,
        text_len=text_len,
        epochs=epochs,
        epochs_run=result.epochs_run,
        stopped=result.stopped,
        patience=args.patience,
        lr=lr,
        batch_size=args.batch_size,
        img_size=args.img_size,
        augment=cfg.augment,
        report_dropout=cfg.report_dropout,
        semi={
            "prototype_epochs": cfg.prototype_epochs,
            "labeled_only_control": cfg.labeled_only_control,
            "use_epi": cfg.use_epi,
            "epi_beta": trainer.epi_beta,
            "lv_alpha": cfg.lv_alpha,
            "unsup_rampup_epochs": cfg.unsup_rampup_epochs,
            "pseudo_zone_gate": cfg.pseudo_zone_gate,
            "pseudo_confidence": cfg.pseudo_confidence,
        }
        if group == "cxr-semi"
        else None,
        precision=str(trainer.autocast_dtype).replace("torch.", "") if trainer.autocast_dtype else "fp32",
        device=str(trainer.device),
        n_train_labeled=len(train),
        n_unlabeled=len(unlabeled),
        steps=steps["n"],
        train_seconds=round(train_seconds, 1),
        best_epoch=result.best_epoch,
        best_val_dice=result.best_dice,
        history=history,
        pseudo_dice=pseudo_dice or None,
        eval_split="Test" if test is not None else "Val",
        limit=args.limit,
        commit=_git("rev-parse", "--short", "HEAD"),
        dirty=bool(_git("status", "--porcelain", "--untracked-files=no", "ml")),
        t0=cfg.t0,
        host=platform.node(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    started = time.perf_counter()
    sens = text_sensitivity(trainer.model, model_cfg, eval_samples, embedder, trainer.device, args.batch_size)
    sens.pop("per_image")
    row["final"] = dict(sens)
    # The evaluation split has few unilateral reports (covid_cxr Val: 2 of 12), so the steering test is repeated on
    # the training images (seen in training with their true reports: a model that follows the text still has to
    # move its mask when the report is mirrored). Labeled as such in the tables.
    train_eval = [s for s in train if s.labeled]
    if group == "cxr-semi" and args.eval_unlabeled:
        # Transductive: the unlabeled training cases with their hidden masks (training never reads them) are the
        # cases a semi-supervised project proposes masks for; 47 images against Val's 12, so less noise.
        hidden = [replace(s, labeled=True) for s in unlabeled]
        pool = text_sensitivity(trainer.model, model_cfg, hidden, embedder, trainer.device, args.batch_size)
        pool.pop("per_image")
        row["final_unlabeled"] = pool
    if group != "cxr-semi":
        seen = text_sensitivity(trainer.model, model_cfg, train_eval, embedder, trainer.device, args.batch_size)
        seen.pop("per_image")
        row["final_train"] = seen
    if args.save_models:
        from ml.predict import save_checkpoint

        save_checkpoint(out_dir / "final.pt", trainer.model, model_cfg, seed=seed, budget=args.budget)
    if test is not None and best_state:
        final_state = copy.deepcopy(trainer.model.state_dict())
        trainer.model.load_state_dict(best_state["model"])
        ds = LViTDataset(test, image_size=args.img_size, in_channels=in_ch, text=embedder, zones=model_cfg.uses_zones)
        row["best_on_test"] = evaluate(trainer.model, model_cfg, ds, trainer.device, args.batch_size).to_dict()
        trainer.model.load_state_dict(final_state)
    row["eval_seconds"] = round(time.perf_counter() - started, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "quality_grid.jsonl"))
    p.add_argument("--run-dir", default=str(REPO / "bench" / "out" / "quality_grid"))
    p.add_argument("--groups", nargs="+", default=["cxr"])
    p.add_argument("--models", nargs="+", default=["lvit_zones", "lvit_app", "lvit_l10", "unet"], choices=list(MODELS))
    p.add_argument("--semi-model", default="lvit_app", choices=list(MODELS))
    p.add_argument("--semi-variants", nargs="+", default=list(SEMI_VARIANTS), choices=SEMI_VARIANTS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--epochs-monuseg", type=int, default=0, help="0: as --epochs")
    p.add_argument("--patience", type=int, default=10_000, help="early stopping on val Dice (default: off)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--img-size", type=int, default=112)
    p.add_argument("--limit", type=int, default=0, help="first N images per split (smoke runs)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    p.add_argument("--budget", default="cpu112", help="a label for this budget; part of every run's key")
    p.add_argument("--shard", default="", help="k/n: run only every n-th run of the plan, starting at k")
    p.add_argument(
        "--eval-unlabeled",
        action="store_true",
        help="cxr-semi: also score the final model on the unlabeled training cases' hidden masks (row final_unlabeled)",
    )
    p.add_argument("--save-models", action="store_true", help="keep each run's final model (<run-dir>/runs/*/final.pt)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {run_key(json.loads(line), json.loads(line)["budget"]) for line in out.read_text().splitlines() if line}
    embedders: dict[int, TextEmbedder] = {}
    for run in plan(args):
        key = run_key(run, args.budget)
        if key in done:
            continue
        print(f"== {key}", flush=True)
        row = execute(run, args, embedders)
        with out.open("a") as fh:  # one line per finished run, appended at once
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        f = row["final"]
        print(
            f"   dice true {f['dice']['true']:.4f} swapped {f['dice']['swapped']:.4f} empty {f['dice']['empty']:.4f}"
            f" | unilateral true {f['dice_unilateral']['true']:.4f} swapped {f['dice_unilateral']['swapped']:.4f}"
            f" | named side {f['side_fraction']['true']:.3f} -> {f['side_fraction']['swapped']:.3f}"
            f" | {row['train_seconds']:.0f}s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
