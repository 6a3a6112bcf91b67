"""Every table of the text-steering grid, made from its raw JSON lines (bench/results/quality_grid.jsonl).

    python bench/quality_tables.py                      # all budgets in the file
    python bench/quality_tables.py --budget cpu64-e6    # one budget

Tables (per group and budget): (1) per model, mean ± std over seeds of the final model's Dice with the true,
swapped and empty report, on all evaluation images and on unilateral reports, the foreground share on the named side,
steps and minutes; (2) differences paired by seed (same seed = same split, initialisation seed and augmentation draws)
for the comparisons that matter, with every seed's value; (3) the goals of issue 10, met or not on the paired mean, with how many seeds
meet them on their own.
Dice in points (x100).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LABELS = {
    "lvit_zones": "LViT-T + zone prior (app text length)",
    "lvit_zones_rd": "LViT-T + zone prior, report dropout 0.2",
    "lvit_app": "LViT-T (app text length)",
    "lvit_l10": "LViT-T (L = 10)",
    "lvit_tw": "LViT-TW",
    "unet": "U-Net",
}
SEMI_LABELS = {
    "labeled_same_steps": "25 % labels, labeled only (same steps)",
    "pseudo": "25 % labels, plain pseudo-labels",
    "epi": "25 % labels, EPI",
    "epi_lv": "25 % labels, EPI + LV",
    "epi_lv_ramp": "25 % labels, EPI + LV, unsupervised weight ramped up",
    "epi_lv_gate": "25 % labels, EPI + LV, pseudo-labels gated by the report's zones",
    "epi_lv_conf": "25 % labels, EPI + LV, confident pseudo-label pixels only",
    "epi_lv_gate_conf": "25 % labels, EPI + LV, report-gated pseudo-labels, confident pixels only",
}
# the arms the semi-supervised goal is for, with what the goal table says after "EPI + LV"
EPI_LV_ARMS = {
    ":epi_lv": "",
    ":epi_lv_ramp": " (ramped up)",
    ":epi_lv_gate": " (report-gated)",
    ":epi_lv_conf": " (confident pixels)",
    ":epi_lv_gate_conf": " (report-gated, confident pixels)",
}
for _m in list(LABELS):
    for _v, _text in SEMI_LABELS.items():
        LABELS[f"{_m}:{_v}"] = f"{LABELS[_m]}, {_text}"
# (a, b): paired a - b
PAIRS = [
    ("lvit_zones", "unet"),
    ("lvit_zones_rd", "unet"),
    ("lvit_zones_rd", "lvit_zones"),
    ("lvit_app", "unet"),
    ("lvit_l10", "unet"),
    ("lvit_zones", "lvit_app"),
    ("lvit_app", "lvit_l10"),
    ("lvit_tw", "unet"),
] + [
    (f"{m}:{v}", f"{m}:labeled_same_steps")
    for m in ("lvit_zones", "lvit_app", "lvit_l10")
    for v in ("epi_lv", "epi_lv_ramp", "epi_lv_gate", "epi_lv_conf", "epi_lv_gate_conf", "epi", "pseudo")
]
PAIRS += [(f"lvit_zones:{v}", "lvit_zones:epi_lv") for v in ("epi_lv_gate", "epi_lv_conf")]
PAIRS += [("lvit_zones:epi_lv_gate_conf", "lvit_zones:epi_lv_gate")]
GOAL_MARGIN = 2.0  # LViT-T >= U-Net + 2 Dice points
GOAL_SWAP_COST = 10.0  # swapping sides costs >= 10 points on unilateral reports
GOAL_NAMED_SIDE = 0.70  # >= 70 % of the predicted foreground on the named side
GOAL_SEMI = 1.0  # EPI + LV >= labeled-only with the same steps + 1 point
PER_SEED: dict[tuple[str, str], list[float]] = {}  # the last paired() call's per-seed differences


def _verdict(mean: float, margin: float, pair: tuple[str, str]) -> str:
    """'yes'/'no' on the paired mean, with how many seeds reach the margin on their own, and whether the difference
    stands out of the seed noise (mean - 2 standard errors of the paired differences > 0): a gain inside the spread
    is not a gain."""
    seeds = PER_SEED.get(pair, [])
    ok = sum(d >= margin for d in seeds)
    verdict = f"{'yes' if mean >= margin else 'no'} on the mean; {ok} of {len(seeds)} seeds"
    if len(seeds) >= 2:
        low = mean - 2 * statistics.stdev(seeds) / math.sqrt(len(seeds))
        verdict += "; outside" if low > 0 else "; **inside**"
        verdict += f" the seed noise (mean - 2 SE = {low:+.1f})"
    return verdict


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pts(v: float | None) -> float:
    return math.nan if v is None else 100.0 * v


def mean_std(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


METRICS: dict[str, Callable[[dict[str, Any]], float]] = {
    "dice_true": lambda r: _pts(r["final"]["dice"]["true"]),
    "dice_swapped": lambda r: _pts(r["final"]["dice"]["swapped"]),
    "dice_empty": lambda r: _pts(r["final"]["dice"]["empty"]),
    "uni_true": lambda r: _pts(r["final"]["dice_unilateral"]["true"]),
    "uni_swapped": lambda r: _pts(r["final"]["dice_unilateral"]["swapped"]),
    "swap_cost": lambda r: _pts(r["final"]["dice_unilateral"]["true"]) - _pts(r["final"]["dice_unilateral"]["swapped"]),
    "side_true": lambda r: _pts(r["final"]["side_fraction"]["true"]),
    "side_swapped": lambda r: _pts(r["final"]["side_fraction"]["swapped"]),
    "best_val": lambda r: _pts(r["best_val_dice"]),
    "best_on_test": lambda r: _pts(r["best_on_test"]["dice"]) if r.get("best_on_test") else math.nan,
}
# cxr-semi with --eval-unlabeled: the final model on the unlabeled training cases' hidden masks (transductive)
POOL_METRICS: dict[str, Callable[[dict[str, Any]], float]] = {
    "pool_dice_true": lambda r: _pts(r["final_unlabeled"]["dice"]["true"]) if "final_unlabeled" in r else math.nan,
}


def key(r: dict[str, Any]) -> str:
    return r["model"] if r["variant"] == "supervised" else f"{r['model']}:{r['variant']}"


def seen_steering(rows: list[dict[str, Any]]) -> str:
    """The steering test repeated on the training images (seen in training with their true reports)."""
    rows = [r for r in rows if "final_train" in r]
    if not rows:
        return ""
    out = [
        "| model (training images) | seeds | Dice, true report | swapped | empty | unilateral: true | swapped | "
        "swap cost | named side %, true | swapped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = [k for k in METRICS if k not in ("best_val", "best_on_test")]
    for model, rs in _by_model(rows).items():
        cells = [mean_std([METRICS[m]({**r, "final": r["final_train"]}) for r in rs]) for m in keys]
        out.append(f"| {LABELS.get(model, model)} | {len(rs)} | " + " | ".join(cells) + " |")
    n, n_uni = rows[0]["final_train"]["n"], rows[0]["final_train"]["n_unilateral"]
    return "\n".join(out) + f"\n\n({n} training images, {n_uni} with unilateral reports.)"


def per_model(rows: list[dict[str, Any]]) -> str:
    out = [
        "| model | seeds | Dice, true report | swapped | empty | unilateral: true | swapped | swap cost | "
        "named side %, true | swapped | best-epoch Val Dice | best epoch on Test | steps | train min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, rs in _by_model(rows).items():
        cells = [mean_std([METRICS[m](r) for r in rs]) for m in METRICS]
        minutes = statistics.fmean(r["train_seconds"] for r in rs) / 60
        out.append(
            f"| {LABELS.get(model, model)} | {len(rs)} | "
            + " | ".join(cells)
            + f" | {rs[0]['steps']} | {minutes:.1f} |"
        )
    return "\n".join(out)


def _by_model(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (list(LABELS).index(key(r)) if key(r) in LABELS else 99, r["seed"])):
        by.setdefault(key(r), []).append(r)
    return by


def paired(rows: list[dict[str, Any]], metric: str = "dice_true") -> tuple[str, dict[tuple[str, str], float]]:
    by = {m: {r["seed"]: r for r in rs} for m, rs in _by_model(rows).items()}
    seeds = sorted({r["seed"] for r in rows})
    out = [
        f"| paired by seed ({metric}) | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | min .. max |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    means: dict[tuple[str, str], float] = {}
    PER_SEED.clear()
    for a, b in PAIRS:
        if a not in by or b not in by:
            continue
        common = [s for s in seeds if s in by[a] and s in by[b]]
        if not common:
            continue
        fn = METRICS.get(metric) or POOL_METRICS[metric]
        diffs = {s: fn(by[a][s]) - fn(by[b][s]) for s in common}
        diffs = {s: d for s, d in diffs.items() if not math.isnan(d)}
        if not diffs:
            continue
        mean = statistics.fmean(diffs.values())
        means[(a, b)] = mean
        PER_SEED[(a, b)] = list(diffs.values())
        cells = [f"{diffs[s]:+.1f}" if s in diffs else "-" for s in seeds]
        out.append(
            f"| {LABELS[a]} - {LABELS[b]} | " + " | ".join(cells) + f" | **{mean:+.1f}** (n={len(diffs)}) | "
            f"{min(diffs.values()):+.1f} .. {max(diffs.values()):+.1f} |"
        )
    return "\n".join(out), means


def goals(rows: list[dict[str, Any]], means: dict[tuple[str, str], float]) -> str:
    by = _by_model(rows)
    out = ["| goal (issue 10) | model | measured | met? |", "|---|---|---|---|"]
    for model in ("lvit_zones", "lvit_app", "lvit_l10"):
        if model not in by:
            continue
        label = LABELS[model]
        if (model, "unet") in means:  # covid_cxr and MoNuSeg alike: the final model
            m = means[(model, "unet")]
            out.append(
                f"| Dice >= U-Net + {GOAL_MARGIN:.0f} points (paired mean) | {label} | {m:+.1f} | "
                f"{_verdict(m, GOAL_MARGIN, (model, 'unet'))} |"
            )
        for where, pick in (("", lambda r: r), (" (training images)", lambda r: {**r, "final": r.get("final_train")})):
            rs = [pick(r) for r in by[model] if pick(r)["final"] is not None]
            costs = [c for c in (METRICS["swap_cost"](r) for r in rs) if not math.isnan(c)]
            sides = [v for v in (METRICS["side_true"](r) for r in rs) if not math.isnan(v)]
            if costs:
                cost = statistics.fmean(costs)
                out.append(
                    f"| swapping sides costs >= {GOAL_SWAP_COST:.0f} points (unilateral){where} | {label} | "
                    f"{cost:.1f} | {'yes' if cost >= GOAL_SWAP_COST else 'no'} |"
                )
            if sides:
                side = statistics.fmean(sides)
                out.append(
                    f"| >= {GOAL_NAMED_SIDE:.0%} of predicted foreground on the named side{where} | {label} | "
                    f"{side:.1f} % | {'yes' if side >= 100 * GOAL_NAMED_SIDE else 'no'} |"
                )
    for (a, _b), m in means.items():
        arm = a[a.find(":") :]
        if arm in EPI_LV_ARMS and _b.endswith(":labeled_same_steps"):
            ramp = EPI_LV_ARMS[arm]
            out.append(
                f"| EPI + LV{ramp} >= labeled-only-same-steps + {GOAL_SEMI:.0f} point (paired mean) | "
                f"{LABELS[a.split(':')[0]]} | {m:+.1f} | {_verdict(m, GOAL_SEMI, (a, _b))} |"
            )
    return "\n".join(out)


USEFUL_DICE = 0.45  # issue 16: "time to a useful model"


def time_to_useful(rows: list[dict[str, Any]]) -> str:
    """Per model: the epoch at which validation Dice first reached USEFUL_DICE and the training wall time until then
    (sum of the epochs' seconds, validation included), per seed and as the median; "-" when never reached."""
    by = _by_model(rows)
    seeds = sorted({r["seed"] for r in rows})
    out = [
        f"| first val Dice >= {USEFUL_DICE} (epoch, s) | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | seeds reaching it | median s (reached) |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    for model, rs in by.items():
        cells, times = {}, []
        for r in rs:
            elapsed = 0.0
            cells[r["seed"]] = "-"
            for h in r.get("history", []):
                elapsed += h["seconds"]
                if h["val_dice"] is not None and h["val_dice"] >= USEFUL_DICE:
                    cells[r["seed"]] = f"{h['epoch'] + 1}, {elapsed:.0f}"
                    times.append(elapsed)
                    break
        median = f"{statistics.median(times):.0f}" if times else "-"
        out.append(
            f"| {LABELS.get(model, model)} | "
            + " | ".join(cells.get(s, "") for s in seeds)
            + f" | {len(times)} of {len(rs)} | {median} |"
        )
    return "\n".join(out)


def pseudo_label_quality(rows: list[dict[str, Any]]) -> str:
    """Per semi-supervised arm: the EPI maps' Dice against the unlabeled cases' hidden masks at the first and the
    last update (rows that recorded it), mean ± SD over seeds."""
    by: dict[str, list[list[float]]] = {}
    for r in rows:
        if r.get("pseudo_dice"):
            by.setdefault(f"{r['model']}:{r['variant']}", []).append(r["pseudo_dice"])
    if not by:
        return ""
    out = ["| arm | seeds | pseudo-label Dice, first update | last update |", "|---|---|---|---|"]
    for arm, runs in by.items():
        first, last = [100 * v[0] for v in runs], [100 * v[-1] for v in runs]
        out.append(f"| {LABELS.get(arm, arm)} | {len(runs)} | {mean_std(first)} | {mean_std(last)} |")
    return "\n".join(out)


def settings_line(rows: list[dict[str, Any]]) -> str:
    r = rows[0]
    keys = ("img_size", "epochs", "batch_size", "lr", "t0", "augment", "precision", "device", "eval_split", "limit")
    n_eval = r["final"]["n"]
    n_uni = r["final"]["n_unilateral"]
    return ", ".join(f"{k} {r.get(k)}" for k in keys) + f"; {n_eval} evaluation images, {n_uni} with unilateral reports"


def report(rows: list[dict[str, Any]], budget: str | None = None) -> str:
    parts = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if budget is None or r["budget"] == budget:
            groups.setdefault((r["group"], r["budget"]), []).append(r)
    for (group, bud), rs in groups.items():
        parts.append(f"### {group}, budget {bud}\n")
        parts.append(f"Settings: {settings_line(rs)}.\n")
        parts.append(per_model(rs) + "\n")
        table, means = paired(rs, "dice_true")
        verdicts = goals(rs, means)  # before the next paired() call replaces the per-seed differences
        parts.append(table + "\n")
        parts.append(paired(rs, "swap_cost")[0] + "\n")
        seen = seen_steering(rs)
        if seen:
            parts.append(seen + "\n")
        parts.append(verdicts + "\n")
        if any("final_unlabeled" in r for r in rs):
            pool_table, pool_means = paired(rs, "pool_dice_true")
            n_pool = next(r["final_unlabeled"]["n"] for r in rs if "final_unlabeled" in r)
            parts.append(
                f"Transductive: the final models on the {n_pool} unlabeled training cases' hidden masks (never read "
                "in training; the cases a semi-supervised project proposes masks for).\n"
            )
            parts.append(pool_table + "\n")
            pool_goal = [
                "| arm, on the unlabeled pool | against | paired mean | verdict |",
                "|---|---|---|---|",
            ]
            for (a, b), m in pool_means.items():
                if a[a.find(":") :] in EPI_LV_ARMS and b.endswith(":labeled_same_steps"):
                    pool_goal.append(f"| {LABELS[a]} | {LABELS[b]} | {m:+.1f} | {_verdict(m, GOAL_SEMI, (a, b))} |")
            parts.append("\n".join(pool_goal) + "\n")
        quality = pseudo_label_quality(rs)
        if quality:
            parts.append(quality + "\n")
        if group in ("cxr", "monuseg"):
            parts.append(time_to_useful(rs) + "\n")
    return "\n".join(parts) if parts else "(no rows)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=str(REPO / "bench" / "results" / "quality_grid.jsonl"))
    p.add_argument("--budget", default=None)
    args = p.parse_args(argv)
    print(report(load(Path(args.results)), args.budget))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
