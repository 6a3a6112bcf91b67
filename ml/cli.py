"""``python -m ml train | eval | predict | count | bench``.

Examples::

    python -m ml train --data ../shared/data/monuseg --out runs/monuseg --epochs 200
    python -m ml train --data ../shared/data/covid_cxr --in-channels 1 --lr 3e-4 --labeled-fraction 0.25 \\
        --lv-bank ../shared/data/lv_loss
    python -m ml eval --checkpoint runs/monuseg/best.pt --data ../shared/data/monuseg --split Test
    python -m ml predict --checkpoint runs/monuseg/best.pt --image a.png --text "The nuclei are dense." --out preds
    python -m ml count --variant T --text-dim 768
    python -m ml bench --help
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml.config import PAPER_TEXT_LEN


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-markdown table of ``rows`` (floats with 4 decimals, ints with thousands separators)."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return str(v)
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


# --------------------------------------------------------------------------- train


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--arch",
        choices=["lvit", "unet", "lvit_zones"],
        default="lvit",
        help="lvit: the paper's network; lvit_zones: LViT + the report's lung-zone prior (ml.models.zones)",
    )
    p.add_argument("--variant", choices=["T", "S", "B"], default="T", help="LViT size (default T)")
    p.add_argument("--no-text", action="store_true", help="the paper's W variants (LViT-TW, ...): no text path")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--in-channels", type=int, choices=[1, 3], default=3, help="1 = gray, 3 = RGB")
    p.add_argument(
        "--mlp-gelu-after-fc2",
        action="store_true",
        help="reference-exact MLP: GELU after the output projection too, as the authors' code (default off)",
    )


def _text_len(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}")
    return n


def model_config(args: argparse.Namespace, *, text_dim: int, text_len: int) -> Any:
    """The :class:`ml.config.LViTConfig` the model arguments (``_add_model_args``) describe: the one place the CLI
    builds it."""
    from ml.config import LViTConfig

    return LViTConfig(
        arch=args.arch,
        variant=args.variant,
        with_text=not args.no_text,
        text_dim=text_dim,
        text_len=text_len,
        img_size=args.img_size,
        in_channels=args.in_channels,
        mlp_gelu_after_fc2=args.mlp_gelu_after_fc2,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ml.text import TextEmbedder, text_length_for
    from ml.train import TrainConfig, Trainer, folder_samples

    labeled, unlabeled, val = folder_samples(
        args.data, args.train_split, args.val_split, args.labeled_fraction, args.seed
    )
    if args.limit:
        labeled, unlabeled, val = labeled[: args.limit], unlabeled[: args.limit], val[: args.limit]
    text_len = args.text_len
    if text_len == "auto":  # every word of the longest report the run sees (the paper cuts at 10: --text-len 10)
        text_len = text_length_for(s.sentence for s in [*labeled, *unlabeled, *val])
    text = TextEmbedder(args.text_model, length=text_len, cache_dir=args.text_cache)
    model_cfg = model_config(args, text_dim=text.dim, text_len=text_len)
    cfg = TrainConfig(
        out_dir=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        precision=args.precision,
        channels_last=not args.no_channels_last,
        fused_optimizer=not args.no_fused_optimizer,
        compile=args.compile,
        num_workers=args.workers,
        augment=not args.no_augment,
        augment_mode=args.augment_mode,
        report_dropout=args.report_dropout,
        prototype_epochs=args.prototype_epochs,
        use_epi=not args.no_epi,
        epi_beta=args.epi_beta,
        pseudo_label=args.pseudo_label,
        pseudo_confidence=args.pseudo_confidence,
        pseudo_zone_gate=args.pseudo_zone_gate,
        lv_alpha=args.lv_alpha,
        unsup_rampup_epochs=args.unsup_rampup,
        lv_bank=args.lv_bank,
        lv_mirror=not args.no_lv_mirror,
        text_model=args.text_model,
        text_cache_dir=args.text_cache,
    )
    bar: dict[str, Any] = {}

    def on_progress(e: dict[str, Any]) -> None:
        kind = e["type"]
        if kind == "start":
            print(
                f"{model_cfg.model_name}: {e['n_labeled']} labeled, {e['n_unlabeled']} unlabeled, "
                f"{e['n_val']} val on {e['device']} (world size {e['world_size']})",
                flush=True,
            )
        elif kind == "step":
            if e["step"] == 0:
                bar["b"] = tqdm(
                    total=e["steps"],
                    desc=f"epoch {e['epoch'] + 1}/{cfg.epochs}",
                    unit="step",
                    leave=False,
                    disable=args.quiet,
                )
            bar["b"].set_postfix(loss=f"{e['losses']['loss']:.4f}")
            bar["b"].update(1)
        elif kind == "epoch":
            if "b" in bar:
                bar.pop("b").close()
            losses = "  ".join(f"{k} {v:.4f}" for k, v in e["losses"].items())
            pseudo = e.get("pseudo") or {}
            extra = f"  pseudo-label dice {pseudo['pseudo_dice']:.4f}" if "pseudo_dice" in pseudo else ""
            print(
                f"epoch {e['epoch'] + 1:4d}/{cfg.epochs}  {losses}  | val dice {e['val']['dice']:.4f} "
                f"iou {e['val']['iou']:.4f}  lr {e['lr']:.2e}  {e['seconds']:.0f}s{extra}"
                f"{'  *best*' if e['improved'] else ''}",
                flush=True,
            )

    trainer = Trainer(
        cfg, model_cfg, labeled, val, unlabeled, on_progress=on_progress, text_embedder=text, resume=args.resume
    )
    result = trainer.fit()
    if trainer.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
        if not trainer.is_main:
            return 0
    print()
    print(
        format_table(
            [
                {
                    "stopped": result.stopped,
                    "epochs_run": result.epochs_run,
                    "best_epoch": result.best_epoch + 1,
                    "best_val_dice": result.best_dice,
                    "checkpoint": result.best_checkpoint or "-",
                }
            ]
        )
    )
    return 0


# --------------------------------------------------------------------------- eval / predict


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from ml.data import LViTDataset, scan_split
    from ml.predict import load_model
    from ml.text import TextEmbedder
    from ml.train import evaluate_detailed, resolve_device

    device = resolve_device(args.device)
    model, cfg, _ = load_model(args.checkpoint, map_location=device)
    text = TextEmbedder(args.text_model, length=cfg.text_len, cache_dir=args.text_cache) if cfg.uses_text else None
    if text is not None and text.dim != cfg.text_dim:
        raise SystemExit(f"text model gives {text.dim}-d features, the checkpoint expects {cfg.text_dim}")
    samples = scan_split(args.data, args.split)
    dataset = LViTDataset(
        samples, image_size=cfg.img_size, in_channels=cfg.in_channels, text=text, zones=cfg.uses_zones
    )
    with torch.inference_mode():
        summary, rows = evaluate_detailed(model, cfg, dataset, device, args.batch_size, progress=not args.quiet)
    steering = None
    if cfg.uses_text or cfg.uses_zones:  # does the report steer the mask? (ml.steer)
        from ml.steer import sensitivity_rows, text_sensitivity

        with torch.inference_mode():
            steering = text_sensitivity(model, cfg, samples, text, device, args.batch_size)
    if args.per_image:
        print(format_table(rows, ["name", "dice", "iou", "empty_both"]))
        print()
    print(format_table([{"model": cfg.model_name, "split": args.split, **summary.to_dict()}]))
    print(
        "empty ground truth + empty prediction scores 1.0 (counted in n_empty_both); threshold 0.5 at "
        f"{cfg.img_size}x{cfg.img_size}"
    )
    if steering is not None:
        print()
        print(f"text steering ({steering['n']} images, {steering['n_unilateral']} with a unilateral report):")
        print(format_table(sensitivity_rows(steering)))
        print(
            "swapped: left and right exchanged in the report (text and zone prior); empty: the empty sentence; "
            "named_side_fraction: share of predicted foreground on the side the true report names (unilateral "
            "reports, non-empty predictions)"
        )
    if args.json:
        payload: dict[str, Any] = {"summary": summary.to_dict(), "per_image": rows}
        if steering is not None:
            payload["steering"] = steering
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from ml.data import scan_split
    from ml.predict import Predictor
    from ml.text import TextEmbedder
    from ml.train import resolve_device

    predictor = Predictor.from_checkpoint(
        args.checkpoint,
        device=resolve_device(args.device),
        backend=args.backend,
        precision=args.precision,
        cache_dir=args.cache_dir,
    )
    cfg = predictor.cfg
    if args.data:
        items = [(s.image_path, s.sentence, s.image_path.stem) for s in scan_split(args.data, args.split)]
    else:
        if not args.image:
            raise SystemExit("give --image (one or more) or --data/--split")
        if cfg.uses_text and not args.text:
            raise SystemExit(f"{cfg.model_name} needs --text (the report sentence)")
        items = [(Path(p), args.text, Path(p).stem) for p in args.image]
    embedder = TextEmbedder(args.text_model, length=cfg.text_len, cache_dir=args.text_cache) if cfg.uses_text else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path, sentence, stem in tqdm(items, desc="predict", unit="image", disable=args.quiet):
        with Image.open(path) as im:
            image = np.array(im.convert("L" if cfg.in_channels == 1 else "RGB"))
        text = embedder.embed(sentence) if embedder is not None else None
        pred = predictor.predict_one(image, text, sentence)
        Image.fromarray(pred.mask.astype(np.uint8) * 255).save(out / f"{stem}_mask.png")
        Image.fromarray(np.rint(pred.probability * 255).astype(np.uint8)).save(out / f"{stem}_prob.png")
        rows.append(
            {
                "image": path.name,
                "foreground_%": 100 * float(pred.mask.mean()),
                "uncertainty": pred.uncertainty,
                "mask": f"{stem}_mask.png",
            }
        )
    print(format_table(rows))
    return 0


# --------------------------------------------------------------------------- count / bench


def cmd_count(args: argparse.Namespace) -> int:
    from ml.models import build_model
    from ml.models.counting import count_macs, count_parameters

    cfg = model_config(args, text_dim=args.text_dim, text_len=args.text_len)
    model = build_model(cfg)
    row: dict[str, Any] = {
        "model": cfg.model_name,
        "text_dim": cfg.text_dim if cfg.uses_text else "-",
        "params": count_parameters(model),
        "params (M)": f"{count_parameters(model) / 1e6:.2f}M",
        "paper convention (M)": f"{count_parameters(model, 'paper') / 1e6:.2f}M",
    }
    if args.macs:
        macs = count_macs(model, cfg)
        row["GMACs/image"] = f"{macs / 1e9:.2f}"
    print(format_table([row]))
    return 0


def cmd_bench(rest: list[str]) -> int:
    from ml import bench

    return int(bench.main(rest) or 0)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml",
        description="LViT Studio ML tools (no Django).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def text_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--text-model", default=None, help="local BERT-family directory (default: bundled MiniLM)")
        p.add_argument("--text-cache", default=None, help="on-disk text feature cache folder")
        p.add_argument(
            "--threads", type=int, default=0, help="torch CPU threads (0: default; 1 is fastest on a busy machine)"
        )

    t = sub.add_parser("train", help="train on an LViT-layout folder (supervised or semi-supervised)")
    t.add_argument("--data", required=True, help="dataset root holding <Split>_Folder/")
    t.add_argument("--out", default="runs/lvit", help="output folder (checkpoints, train_config.json)")
    t.add_argument("--train-split", default="Train")
    t.add_argument("--val-split", default="Val")
    _add_model_args(t)
    t.add_argument(
        "--text-len",
        type=_text_len,
        default="auto",
        help="words of the report the text path sees; auto (default): the longest sentence of the data; "
        f"{PAPER_TEXT_LEN}: the paper's L",
    )
    t.add_argument("--epochs", type=int, default=200)
    t.add_argument("--batch-size", type=int, default=2)
    t.add_argument("--lr", type=float, default=1e-3, help="1e-3 (MoNuSeg) / 3e-4 (QaTa-like chest X-ray)")
    t.add_argument("--patience", type=int, default=50, help="early stopping on val Dice")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    t.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="autocast of the training forward; auto: bf16 on CPUs with native bf16 (AMX or AVX512-BF16), fp16 on CUDA "
        "(see ml.train)",
    )
    t.add_argument("--compile", action="store_true", help="torch.compile the network for training")
    t.add_argument("--no-channels-last", action="store_true", help="NCHW activations (the pre-speed-up step)")
    t.add_argument("--no-fused-optimizer", action="store_true", help="Adam looping over tensors")
    t.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument(
        "--augment-mode",
        choices=["consistent", "reference"],
        default="consistent",
        help="consistent: mirrors swap left/right (upper/lower) in the report, no 90-degree rotations; "
        "reference: the authors' rot90 + flip, text unchanged (paper reproduction)",
    )
    t.add_argument(
        "--report-dropout",
        type=float,
        default=0.0,
        help="probability that a labeled item's report is blanked in training (no words, no zone prior), so the "
        "model also segments a case without one; the app trains zone models with 0.2 (docs/results.md)",
    )
    t.add_argument("--labeled-fraction", type=float, default=1.0, help="< 1 switches on semi-supervised training")
    t.add_argument("--prototype-epochs", type=int, default=10, help="labeled-only epochs before pseudo-labels")
    t.add_argument("--no-epi", action="store_true", help="pseudo-label = current prediction (beta = 0)")
    t.add_argument(
        "--epi-beta",
        type=lambda v: None if v == "auto" else float(v),
        default=None,
        help="EPI momentum; auto (default): the β rule, the prototype keeps 5%% of the weight after the run's "
        "updates (ml.epi.beta_for_updates); 0.99: the paper's setting",
    )
    t.add_argument("--pseudo-label", choices=["soft", "hard"], default="soft")
    t.add_argument(
        "--pseudo-confidence",
        type=float,
        default=0.0,
        help="c in (0.5, 1): only pseudo-label pixels >= c or <= 1-c enter the unsupervised loss, as hard targets "
        "(0: all pixels)",
    )
    t.add_argument(
        "--pseudo-zone-gate",
        action="store_true",
        help="multiply each pseudo-label by the report's claimed lung zones before it enters the EPI map",
    )
    t.add_argument("--lv-alpha", type=float, default=0.1, help="LV loss weight (0 disables)")
    t.add_argument(
        "--unsup-rampup",
        type=int,
        default=0,
        help="epochs over which the unsupervised weight ramps up after the prototype (0: full weight at once)",
    )
    t.add_argument("--lv-bank", default="labeled", help="'labeled', 'none' or an LV template folder")
    t.add_argument("--no-lv-mirror", action="store_true", help="do not mirror template masks left-right")
    t.add_argument("--resume", default=None, help="continue from a last.pt")
    t.add_argument("--limit", type=int, default=0, help="use only the first N samples of each set (smoke runs)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    text_args(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="Dice/IoU of a checkpoint on a split")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="Test")
    e.add_argument("--device", default="auto")
    e.add_argument("--batch-size", type=int, default=4)
    e.add_argument("--per-image", action="store_true", help="also print one row per image")
    e.add_argument("--json", default=None, help="write summary + per-image rows to this file")
    e.add_argument("--quiet", action="store_true")
    text_args(e)
    e.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="segment images; writes <stem>_mask.png and <stem>_prob.png")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--image", nargs="*", default=[], help="image files")
    p.add_argument("--text", default=None, help="report sentence for --image (text models)")
    p.add_argument("--data", default=None, help="or: a dataset root (uses its text table)")
    p.add_argument("--split", default="Test")
    p.add_argument("--out", default="predictions")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--backend", choices=["auto", "torch", "openvino", "onnxruntime"], default="auto", help="see ml.serving"
    )
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default="auto")
    p.add_argument("--cache-dir", default=None, help="keep converted models (OpenVINO IR / ONNX) here")
    p.add_argument("--quiet", action="store_true")
    text_args(p)
    p.set_defaults(func=cmd_predict)

    c = sub.add_parser("count", help="parameter count (and MACs) of a configuration")
    _add_model_args(c)
    c.add_argument("--text-dim", type=int, default=384, help="384 (bundled MiniLM) or 768 (BERT-base, paper)")
    c.add_argument("--text-len", type=int, default=PAPER_TEXT_LEN, help="words the text path sees (paper: 10)")
    c.add_argument("--macs", action="store_true", help="also count multiply-adds (one forward pass)")
    c.set_defaults(func=cmd_count)

    sub.add_parser("bench", help="inference benchmark (ml.bench); arguments after 'bench' go to it", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    return int(args.func(args) or 0)
