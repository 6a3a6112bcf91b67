"""Quality on real data at an equal training budget: LViT-T vs LViT-TW vs U-Net, and semi-supervised LViT-T.

Runs (each: same epochs, seeds, batch size, augmentation, LR schedule for every model):

* ``cxr``: covid_cxr Train -> Val (gray, lr 3e-4 as the paper's QaTa-COV19 setting). The held-out Test
  split is not here, so the **final** model (no epoch selection on Val) is scored on Val; the best-epoch
  Val Dice is reported too, marked as selected on the same split.
* ``monuseg``: MoNuSeg Train -> Test (RGB, lr 1e-3), best epoch selected on Val, scored on Test (as the
  reference); the final model's Test Dice is reported too.
* ``cxr-semi``: covid_cxr with 25 % of Train labeled (same split for every variant): labeled only (same
  epochs, so 1/3 of the steps the semi-supervised runs take); labeled only with the labeled list repeated
  to the same number of steps per epoch as the semi-supervised runs (a control for the extra labeled steps);
  pseudo-labels without EPI (β = 0, plain self-training); EPI (β = 0.99); EPI + LV loss (alpha = 0.1, bank:
  the 14 LViT templates mirrored left-right for patient-side text); and EPI with β = 0.9 + LV (not the
  paper's setting: with ~7 generations β = 0.99 keeps 93 % of the prototype's P_0).

Results are appended as JSON lines (one per run, resumable: finished runs are skipped) and printed as
tables of mean ± std over seeds (per-image std in brackets).

    nice -n 10 python bench/bench_quality.py --epochs-cxr 12 --epochs-monuseg 20 --seeds 0
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.config import LViTConfig  # noqa: E402
from ml.data import LViTDataset, scan_split, split_labeled  # noqa: E402
from ml.text import TextEmbedder  # noqa: E402
from ml.train import TrainConfig, Trainer, evaluate  # noqa: E402

MODELS = {
    "LViT-T": {"arch": "lvit", "with_text": True},
    "LViT-TW": {"arch": "lvit", "with_text": False},
    "U-Net": {"arch": "unet", "with_text": False},
}
SEMI_VARIANTS = {
    "labeled only": None,
    "labeled only, same steps": "repeat",
    "pseudo (no EPI)": {"use_epi": False, "lv_alpha": 0.0},
    "EPI": {"use_epi": True, "lv_alpha": 0.0},
    "EPI + LV": {"use_epi": True, "lv_alpha": 0.1},
    "EPI beta 0.9 + LV": {"use_epi": True, "epi_beta": 0.9, "lv_alpha": 0.1},  # ours: few generations
}


def plan(groups: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    runs = []
    for seed in seeds:
        for group in groups:
            if group in ("cxr", "monuseg"):
                for model in MODELS:
                    runs.append({"group": group, "model": model, "variant": "supervised", "seed": seed})
            elif group == "cxr-semi":
                for variant in SEMI_VARIANTS:
                    runs.append({"group": group, "model": "LViT-T", "variant": variant, "seed": seed})
            else:
                raise SystemExit(f"unknown group {group}")
    return runs


def run_key(run: dict[str, Any]) -> str:
    return f"{run['group']}|{run['model']}|{run['variant']}|{run['seed']}"


def execute(run: dict[str, Any], args: argparse.Namespace, embedder: TextEmbedder) -> dict[str, Any]:
    data = Path(args.data_root)
    group, seed = run["group"], run["seed"]
    if group == "monuseg":
        root, in_ch, lr, epochs = data / "monuseg", 3, 1e-3, args.epochs_monuseg
        train, val, test = scan_split(root, "Train"), scan_split(root, "Val"), scan_split(root, "Test")
    else:
        root, in_ch, lr, epochs = data / "covid_cxr", 1, 3e-4, args.epochs_cxr
        train, val, test = scan_split(root, "Train"), scan_split(root, "Val"), None
    unlabeled: list = []
    overrides: dict[str, Any] = {}
    if group == "cxr-semi":
        train, hidden = split_labeled(train, 0.25, seed=seed)
        variant = SEMI_VARIANTS[run["variant"]]
        if variant == "repeat":  # as many labeled steps per epoch as the semi-supervised runs take
            train = train * math.ceil(len(hidden) / len(train))
        elif variant is not None:
            unlabeled = hidden
            overrides = dict(variant, prototype_epochs=max(1, epochs // 3), lv_bank=str(data / "lv_loss"))
    model_cfg = LViTConfig(**MODELS[run["model"]], img_size=args.img_size, in_channels=in_ch, text_dim=embedder.dim)
    out_dir = (
        Path(args.out) / "runs" / run_key(run).replace("|", "_").replace(" ", "-").replace("(", "").replace(")", "")
    )
    cfg = TrainConfig(
        out_dir=str(out_dir),
        epochs=epochs,
        batch_size=args.batch_size,
        lr=lr,
        seed=seed,
        device=args.device,
        patience=10_000,
        save_best=False,
        save_last=False,
        **overrides,
    )
    torch.manual_seed(seed)
    best_state: dict[str, Any] = {}
    events: list[dict[str, Any]] = []

    def on_progress(event: dict[str, Any]) -> None:
        if event["type"] == "epoch":
            events.append({k: event[k] for k in ("epoch", "losses", "val", "pseudo", "seconds")})
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
    seconds = time.perf_counter() - started
    ds_args = {"image_size": args.img_size, "in_channels": in_ch, "text": embedder}
    final_state = copy.deepcopy(trainer.model.state_dict())
    row: dict[str, Any] = dict(
        run,
        epochs=epochs,
        lr=lr,
        batch_size=args.batch_size,
        img_size=args.img_size,
        n_train_labeled=len(train),
        n_unlabeled=len(unlabeled),
        train_seconds=seconds,
        best_epoch=result.best_epoch,
        history=events,
    )
    if test is None:  # cxr: final model on Val; best-epoch Val marked as selected on the same split
        final = trainer.validate()
        row |= {"eval_split": "Val", "final": final.to_dict(), "best_selected_on_eval": result.best_dice}
    else:
        test_set = LViTDataset(test, **ds_args)
        final = evaluate(trainer.model, model_cfg, test_set, trainer.device, args.batch_size)
        trainer.model.load_state_dict(best_state["model"])
        best = evaluate(trainer.model, model_cfg, test_set, trainer.device, args.batch_size)
        trainer.model.load_state_dict(final_state)
        row |= {
            "eval_split": "Test",
            "best": best.to_dict(),
            "final": final.to_dict(),
            "best_val_dice": result.best_dice,
        }
    return row


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    m = statistics.fmean(values) * 100
    s = statistics.stdev(values) * 100 if len(values) > 1 else 0.0
    return f"{m:.2f} ± {s:.2f}" if len(values) > 1 else f"{m:.2f}"


def _pseudo_dice(row: dict[str, Any], which: int) -> float | None:
    """Pseudo-label Dice vs the hidden masks at the first (0) or last (-1) EPI update of a run."""
    updates = [h["pseudo"]["pseudo_dice"] for h in row["history"] if h.get("pseudo") and "pseudo_dice" in h["pseudo"]]
    return updates[which] if updates else None


def report(rows: list[dict[str, Any]]) -> str:
    lines = []
    by: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["group"], r["model"], r["variant"]), []).append(r)
    header = "| data | model | setting | seeds | epochs | Dice % (score) | mIoU % (score) | per-image Dice std | empty/empty | best-epoch Dice % | train min |"
    lines += [header, "|" + "---|" * 11]
    for (group, model, variant), rs in by.items():
        primary = "best" if group == "monuseg" else "final"
        dice = [r[primary]["dice"] for r in rs]
        iou = [r[primary]["iou"] for r in rs]
        per_image_std = statistics.fmean(r[primary]["dice_std"] for r in rs) * 100
        empty = rs[0][primary]["n_empty_both"]
        n = rs[0][primary]["n"]
        if group == "monuseg":
            where = "Test, best epoch on Val"
            other = fmt([r["final"]["dice"] for r in rs]) + " (final epoch)"
        else:
            where = "Val, final epoch"
            other = fmt([r["best_selected_on_eval"] for r in rs]) + " (selected on Val)"
        minutes = statistics.fmean(r["train_seconds"] for r in rs) / 60
        setting = variant if group == "cxr-semi" else "100 % labels"
        if group == "cxr-semi":
            first = [_pseudo_dice(r, 0) for r in rs]
            last = [_pseudo_dice(r, -1) for r in rs]
            if all(v is not None for v in first + last):
                setting += f" (pseudo-label Dice first -> last update: {fmt(first)} -> {fmt(last)})"
        lines.append(
            f"| {group} ({where}) | {model} | {setting} | {len(rs)} | {rs[0]['epochs']} | {fmt(dice)} | {fmt(iou)} | "
            f"{per_image_std:.1f} (n={n}) | {empty} | {other} | {minutes:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    default_data = REPO.parent / "shared" / "data"
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(default_data))
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "quality"))
    p.add_argument("--groups", nargs="+", default=["cxr", "monuseg", "cxr-semi"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs-cxr", type=int, default=12)
    p.add_argument("--epochs-monuseg", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    rows = [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.exists() else []
    done = {run_key(r) for r in rows}
    if not args.report_only:
        embedder = TextEmbedder(cache_dir=out / "text_cache")
        for run in plan(args.groups, args.seeds):
            if run_key(run) in done:
                continue
            print(f"== {run_key(run)}", flush=True)
            row = execute(run, args, embedder)
            rows.append(row)
            with results_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(report(rows), flush=True)
    print(report(rows))


if __name__ == "__main__":
    main()
