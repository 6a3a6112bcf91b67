"""Cold start of a worker: seconds from process start to the first proposal, per inference engine.

Each measurement is a fresh Python process that does what a worker does before its first proposal: import
torch and ``ml``, load the text model, load the checkpoint into a ``Predictor`` (converting it for OpenVINO /
ONNX Runtime, or reading the converted file from the cache), warm the engine up with one blank forward, then
serve the first request: embed the report sentence and segment one 512x512 image. The parent takes the
clock before starting the process; the child reports when each phase ended. Each engine runs twice with the
same ``--cache-dir``: with an empty cache (first start after a new model version) and with the converted
model already there (every later start).

    OMP_NUM_THREADS=1 python bench/bench_cold_start.py --threads 1 --engines torch:fp32 auto

``--worker`` measures the real thing instead: a ``celery worker`` process of the inference pool (``-Q inference``,
solo pool, ``LVIT_TORCH_THREADS=--threads``) against PostgreSQL and Redis, with one project whose active model is
the checkpoint. Each start is timed from ``Popen``: until the worker logs `` ready.``, until its warm-up is done
(``LVIT_WORKER_WARM_UP=1``), and until the proposal of an upload stored right after ``ready`` (the first user
arriving at once) or right after the warm-up (a user arriving later) exists. Starts alternate between warm-up
off and on, ``--repeats`` each, with the converted-model cache (``LVIT_SERVING_CACHE``) kept between starts as a
worker's is; rows go to ``bench/results/cold_start_worker.jsonl``. Creates and drops the database
``lvit_bench_cold``:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/4 \\
        python bench/bench_cold_start.py --worker --threads 1 --repeats 2

``--trees before=DIR after=.`` compares code versions side by side: the worker process of each start runs from one
of the checkouts (e.g. ``git worktree add ../before <commit>``; the same migrations), alternating start by start,
each tree with its own serving cache; every row says which tree ran and the warm-up's own phases.
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


def make_checkpoint(img_size: int, arch: str = "lvit") -> Path:
    """A random-weight checkpoint (timing only) at ``img_size``, gray input, MiniLM text."""
    sys.path.insert(0, str(REPO))
    from ml.config import LViTConfig
    from ml.models import build_model
    from ml.predict import save_checkpoint

    path = OUT / (f"lvit_t_{img_size}.pt" if arch == "lvit" else f"{arch}_{img_size}.pt")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg = LViTConfig(arch=arch, img_size=img_size, in_channels=1, text_dim=384, text_len=20)
        save_checkpoint(path, build_model(cfg), cfg)
    return path


def warm_up_end(log_path: Path) -> float | None:
    """When the worker's warm-up finished (``started`` + ``total_s`` of its "warm-up done" log line), else None."""
    import re

    found = re.search(
        r"warm-up done: .*'started': ([0-9.]+).*'total_s': ([0-9.]+)", log_path.read_text(errors="replace")
    )
    return float(found.group(1)) + float(found.group(2)) if found else None


def warm_up_phases(log_path: Path) -> dict[str, Any]:
    """The warm-up's own phases from its log line: when it started, imports, text model (and engine), models."""
    import ast
    import re

    found = re.search(r"warm-up done: (\{.*\})", log_path.read_text(errors="replace"))
    if not found:
        return {}
    try:
        report = ast.literal_eval(found.group(1))
    except (ValueError, SyntaxError):
        return {}
    return {
        "warm_up_started": report.get("started"),
        "imports_s": report.get("imports_s"),
        "text_model_s": report.get("text_model_s"),
        "text_engine": report.get("text_engine"),
        "models_s": sum(p.get("s", 0.0) for p in report.get("projects", [])),
        "torch_imported": report.get("torch_imported"),  # None: not reported (code before torch-free serving)
    }


def worker_starts(args: argparse.Namespace, checkpoint: Path) -> None:
    """``--worker``: time real inference-pool worker starts (see the module docstring)."""
    from datetime import UTC, datetime

    sys.path.insert(0, str(REPO / "bench"))
    from _db import drop_scratch, scratch_django
    from bench_workers import SENTENCE, synthetic

    scratch = "lvit_bench_cold"
    base, tmp = scratch_django(
        scratch,
        prefix="lvit-bench-cold-",
        why="the worker process shares the database",
        LVIT_CELERY_EAGER="0",
        ML_DEVICE=os.environ.get("ML_DEVICE", "cpu"),
    )
    from django.contrib.auth import get_user_model

    from ml.config import LViTConfig
    from ml.predict import load_checkpoint
    from server.celery import app
    from server.studio.models import MaskKind, MaskVersion, ModelStatus, ModelVersion
    from server.studio.services.cases import case_create
    from server.studio.services.projects import project_create
    from server.studio.services.registry import model_version_create

    user = get_user_model().objects.create_user(username="bench", password="bench-123456789")
    project = project_create(user=user, name="cold", template="free-text")
    cfg = LViTConfig.from_dict(load_checkpoint(checkpoint, map_location="cpu")["config"])
    mv = model_version_create(
        project=project, checkpoint=checkpoint, config={"model": cfg.to_dict()}, metrics={}, parent=None,
        training_job=None,
    )  # fmt: skip
    ModelVersion.objects.filter(pk=mv.pk).update(status=ModelStatus.ACTIVE)
    app.control.purge()
    rows, seed = [], 0
    run = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    trees = dict(t.split("=", 1) for t in args.trees) if args.trees else {"this": str(REPO)}
    if args.trees:  # first starts (conversions) once per tree, then alternating trees start by start
        plan = [(name, 1, "after warm-up") for name in trees]
        plan += [(name, 1, when) for _ in range(args.repeats) for when in ("after warm-up", "at ready")
                 for name in trees]  # fmt: skip
    else:
        plan = [("this", 0, "at ready")] + [("this", w, when) for _ in range(args.repeats) for w, when in
                                            ((0, "at ready"), (1, "at ready"), (1, "after warm-up"))]  # fmt: skip
    first_seen: set[str] = set()
    try:
        for i, (tree, warm, when) in enumerate(plan):
            cwd = Path(trees[tree]).resolve()
            env = {**os.environ, "LVIT_WORKER_WARM_UP": str(warm), "LVIT_TORCH_THREADS": str(args.threads or 0),
                   "LVIT_SERVING_CACHE": str(tmp / f"serving-{tree}")}  # fmt: skip
            if args.threads:
                env["OMP_NUM_THREADS"] = str(args.threads)
            log_path = tmp / f"worker-{i}.log"
            cmd = [sys.executable, "-m", "celery", "-A", "server", "worker", "-Q", "inference", "--pool=solo",
                   "-n", f"cold{i}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"]  # fmt: skip
            start = time.time()
            with log_path.open("wb") as log:
                proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                ready = None
                while ready is None:
                    if " ready." in log_path.read_text(errors="replace"):
                        ready = time.time()
                    elif proc.poll() is not None or time.time() - start > 1800:
                        raise RuntimeError(f"worker exited or hung:\n{log_path.read_text(errors='replace')[-3000:]}")
                    else:
                        time.sleep(0.05)
                while when == "after warm-up" and warm_up_end(log_path) is None:
                    if proc.poll() is not None or time.time() - start > 1800:
                        raise RuntimeError(f"no warm-up:\n{log_path.read_text(errors='replace')[-3000:]}")
                    time.sleep(0.05)
                seed += 1
                data, _ = synthetic(seed, 512)
                sent = time.time()
                # a sentence never seen before: the text feature cache cannot answer it, the text model must
                case = case_create(
                    project=project,
                    user=user,
                    data=data,
                    filename=f"c{seed}.png",
                    split="test",
                    report_text=f"{SENTENCE} Start {i} of run {run}.",
                )
                while not MaskVersion.objects.filter(case=case, kind=MaskKind.PROPOSAL).exists():
                    if proc.poll() is not None or time.time() - sent > 1800:
                        raise RuntimeError(f"no proposal:\n{log_path.read_text(errors='replace')[-3000:]}")
                    time.sleep(0.02)
                done = time.time()
                warm_end = warm_up_end(log_path) if warm else None
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            row = {
                "run": run,
                "start": i,
                "tree": tree,
                "commit": subprocess.run(
                    ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True
                ).stdout.strip(),
                "warm_up": bool(warm),
                "upload": when,
                "first_start": tree not in first_seen,
                "ready_s": ready - start,
                "warm_up_done_s": (warm_end - start) if warm_end else None,
                "first_proposal_latency_s": done - sent,
                "process_start_to_first_proposal_s": done - start,
                "load_avg": os.getloadavg()[0],
                **(
                    {k: v - start if k == "warm_up_started" and v else v for k, v in warm_up_phases(log_path).items()}
                    if warm
                    else {}
                ),
            }
            first_seen.add(tree)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        drop_scratch(base, scratch)
    out = REPO / "bench" / "results" / "cold_start_worker.jsonl"
    with out.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    print(f"\ncheckpoint {checkpoint.name}; threads {args.threads or 'default'}; load average "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}\n")  # fmt: skip
    print("| tree | start | warm-up | upload sent | process start -> ready s | -> warm-up started s "
          "| warm-up: imports s | text model s (engine) | models s | -> warm-up done s | upload -> proposal s "
          "| process start -> first proposal s | torch imported |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def f(v: Any) -> str:
        return f"{v:.1f}" if isinstance(v, float) else "-"

    ticks = {True: "yes", False: "no"}
    for r in rows:
        label = "first (converts the model)" if r["first_start"] else "later (converted model cached)"
        print(f"| {r['tree']} ({r['commit']}) | {label} | {'on' if r['warm_up'] else 'off'} | {r['upload']} "
              f"| {r['ready_s']:.1f} | {f(r.get('warm_up_started'))} | {f(r.get('imports_s'))} "
              f"| {f(r.get('text_model_s'))} ({r.get('text_engine') or '-'}) | {f(r.get('models_s'))} "
              f"| {f(r['warm_up_done_s'])} | {r['first_proposal_latency_s']:.1f} "
              f"| {r['process_start_to_first_proposal_s']:.1f} "
              f"| {ticks.get(r.get('torch_imported'), '-')} |")  # fmt: skip
    import statistics

    later = [r for r in rows if not r["first_start"] and r["warm_up"]]
    print("\n| tree | starts | median process start -> warm-up done s | median upload at ready -> proposal s |")
    print("|---|---|---|---|")
    for tree in trees:
        done = [r["warm_up_done_s"] for r in later if r["tree"] == tree and r["warm_up_done_s"]]
        at_ready = [r["process_start_to_first_proposal_s"] for r in later if r["tree"] == tree and r["upload"] ==
                    "at ready"]  # fmt: skip
        print(f"| {tree} | {len(done)} | {f(statistics.median(done)) if done else '-'} "
              f"| {f(statistics.median(at_ready)) if at_ready else '-'} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", type=Path, help="default: a random LViT-T at --img-size")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--engines", nargs="+", default=["torch:fp32", "auto"], help="backend:precision or auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="warm-cache starts per engine")
    p.add_argument("--worker", action="store_true", help="time real inference-pool worker starts (see above)")
    p.add_argument("--trees", nargs="+", default=[], help="--worker: name=checkout pairs to alternate")
    p.add_argument("--arch", default="lvit", help="architecture of the random checkpoint (e.g. lvit_zones)")
    args = p.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    checkpoint = args.checkpoint or make_checkpoint(args.img_size, args.arch)
    if args.worker:
        worker_starts(args, checkpoint)
        return
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
