#!/usr/bin/env bash
# Full-length MoNuSeg reproduction on one GPU: LViT-T, LViT-TW and U-Net with the reference settings
# (batch 2, Adam lr 1e-3, cosine warm restarts T_0=10 / eta_min 1e-4 per epoch, early stopping after 50
# epochs without val Dice improvement, best epoch selected on Val, scored on Test at 224x224).
# Reference README (MoNuSeg): LViT-T Dice 80.36 / mIoU 67.31, U-Net 76.45 / 62.86.
#
#   bench/gpu_monuseg_repro.sh                                   # the full run (GPU)
#   TEXT_MODEL=/models/bert-base-uncased bench/gpu_monuseg_repro.sh   # paper-exact 768-d BERT features
#   EPOCHS=1 DEVICE=cpu LIMIT=2 MODELS=lvit bench/gpu_monuseg_repro.sh # dry run (2 images, 1 epoch)
#
# Environment: DATA (monuseg root), OUT, EPOCHS (2000, as the reference config; early stopping ends it),
# SEEDS ("0 1 2"), MODELS ("lvit lvit-tw unet"), DEVICE (cuda), WORKERS (4), TEXT_MODEL (a local
# BERT-family directory; default: the bundled 384-d MiniLM), LIMIT (first N images per split; 0 = all).
# Our monuseg copy is 512x512 (downscaled from 1000x1000); every model sees it resized to 224 anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DATA=${DATA:-../shared/data/monuseg}
OUT=${OUT:-runs/monuseg_repro}
EPOCHS=${EPOCHS:-2000}
SEEDS=${SEEDS:-"0 1 2"}
MODELS=${MODELS:-"lvit lvit-tw unet"}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-4}
LIMIT=${LIMIT:-0}
TEXT_ARGS=()
if [[ -n "${TEXT_MODEL:-}" ]]; then TEXT_ARGS=(--text-model "$TEXT_MODEL"); fi
mkdir -p "$OUT"

for seed in $SEEDS; do
  for model in $MODELS; do
    case $model in
      lvit) MODEL_ARGS=(--arch lvit --variant T) ;;
      lvit-tw) MODEL_ARGS=(--arch lvit --variant T --no-text) ;;
      unet) MODEL_ARGS=(--arch unet) ;;
      *) echo "unknown model $model" >&2; exit 2 ;;
    esac
    run="$OUT/${model}_seed${seed}"
    echo "== $model seed $seed -> $run"
    "$PY" -m ml train --data "$DATA" --out "$run" "${MODEL_ARGS[@]}" --in-channels 3 --img-size 224 \
      --epochs "$EPOCHS" --batch-size 2 --lr 1e-3 --patience 50 --seed "$seed" --device "$DEVICE" \
      --workers "$WORKERS" --limit "$LIMIT" --text-cache "$OUT/text_cache" "${TEXT_ARGS[@]}"
    "$PY" -m ml eval --checkpoint "$run/best.pt" --data "$DATA" --split Test --device "$DEVICE" \
      --text-cache "$OUT/text_cache" "${TEXT_ARGS[@]}" --json "$run/test_metrics.json" --quiet
  done
done

"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {}
for f in sorted(out.glob("*_seed*/test_metrics.json")):
    model = f.parent.name.rsplit("_seed", 1)[0]
    rows.setdefault(model, []).append(json.loads(f.read_text())["summary"])
ref = {"lvit": "80.36 / 67.31", "unet": "76.45 / 62.86", "lvit-tw": "-"}
print("\n| model | seeds | Test Dice % | Test mIoU % | reference Dice / mIoU |")
print("|---|---|---|---|---|")
for model, rs in rows.items():
    def fmt(key):
        v = [r[key] * 100 for r in rs]
        return f"{statistics.fmean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"
    print(f"| {model} | {len(rs)} | {fmt('dice')} | {fmt('iou')} | {ref.get(model, '-')} |")
PYEOF
