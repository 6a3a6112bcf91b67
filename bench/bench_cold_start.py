"""Cold start of a worker: seconds from process start to the first proposal, per inference engine.

Each measurement is a fresh Python process that does what a worker does before its first proposal: import
torch and ``ml``, load the text model, load the checkpoint into a ``Predictor`` (converting it for OpenVINO /
ONNX Runtime, or reading the converted file from the cache), warm the engine up with one blank forward, then
serve the first request: embed the report sentence and segment one 512x512 image. The parent takes the
clock before starting the process; the child reports when each phase ended. Each engine runs twice with the
same ``--cache-dir``: with an empty cache (first start after a new model version) and with the converted
model already there (every later start).

    OMP_NUM_THREADS=1 python bench/bench_cold_start.py --threads 1 --engines torch:fp32 auto
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "cold_start"


def child(spec: dict[str, Any]) -> None:
    """Runs in the fresh process; prints one JSON line of absolute phase end times."""
    marks: dict[str, float] = {}
    import numpy as np
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    sys.path.insert(0, str(REPO))
    from ml.predict import Predictor
    from ml.text import TextEmbedder

    marks["imports"] = time.time()
    backend, _, precision = spec["engine"].partition(":")
    predictor = Predictor.from_checkpoint(
        spec["checkpoint"], backend=backend, precision=precision or "auto", cache_dir=spec["cache_dir"]
    )
    marks["model_loaded"] = time.time()
    embedder = TextEmbedder(length=predictor.cfg.text_len)
    embedder.embed("warm up")
    marks["text_model_loaded"] = time.time()
    predictor.warm_up((1,))
    marks["warm_up"] = time.time()
    image = np.random.default_rng(0).integers(0, 256, (512, 512), dtype=np.uint8)
    text = embedder.embed_many(["Bilateral pulmonary infection, two infected areas, lower left lung."])
    result = predictor.predict([image], text, batch_size=1)[0]
    marks["first_proposal"] = time.time()
    print(json.dumps({"marks": marks, "describe": predictor.describe(), "mask_pixels": int(result.mask.sum())}))


def make_checkpoint(img_size: int) -> Path:
    """A random-weight LViT-T checkpoint (timing only) at ``img_size``, gray input, MiniLM text."""
    sys.path.insert(0, str(REPO))
    from ml.config import LViTConfig
    from ml.models import build_model
    from ml.predict import save_checkpoint

    path = OUT / f"lvit_t_{img_size}.pt"
    if not path.is_file():
        cfg = LViTConfig(img_size=img_size, in_channels=1, text_dim=384)
        save_checkpoint(path, build_model(cfg), cfg)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", type=Path, help="default: a random LViT-T at --img-size")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--engines", nargs="+", default=["torch:fp32", "auto"], help="backend:precision or auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="warm-cache starts per engine")
    args = p.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    checkpoint = args.checkpoint or make_checkpoint(args.img_size)
    rows = []
    for engine in args.engines:
        cache = OUT / f"cache-{engine.replace(':', '-')}"
        shutil.rmtree(cache, ignore_errors=True)
        for run in ["empty cache"] + ["converted model cached"] * args.repeats:
            spec = {"engine": engine, "checkpoint": str(checkpoint), "cache_dir": str(cache), "threads": args.threads}
            start = time.time()
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(spec)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            m = out["marks"]
            row = {
                "engine": engine,
                "run": run,
                "chosen": f"{out['describe']['backend']}:{out['describe']['precision']}",
                "imports": m["imports"] - start,
                "model": m["model_loaded"] - m["imports"],
                "text": m["text_model_loaded"] - m["model_loaded"],
                "warm_up": m["warm_up"] - m["text_model_loaded"],
                "first_request": m["first_proposal"] - m["warm_up"],
                "total": m["first_proposal"] - start,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ncheckpoint {checkpoint.name}; load average {load}\n")
    print(
        "| engine (chosen) | start | python + torch + ml imports s | load model (+ convert) s | text model s "
        "| warm-up forward s | first proposal s | process start -> first proposal s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['engine']} ({r['chosen']}) | {r['run']} | {r['imports']:.2f} | {r['model']:.2f} | {r['text']:.2f} "
            f"| {r['warm_up']:.2f} | {r['first_request']:.2f} | {r['total']:.2f} |"
        )


if __name__ == "__main__":
    main()
