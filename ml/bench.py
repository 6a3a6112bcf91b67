"""CPU inference benchmark: the eager model vs the inference engines of ``ml.serving``.

Modes: ``eager`` = the model as trained (eval, ``torch.no_grad``, NCHW float32); ``fast`` = PyTorch fast path
(``ml.serving.optimize_for_inference`` under ``torch.inference_mode``, float32); ``compiled`` = ``fast`` +
``torch.compile`` (inductor, freezing); ``bf16`` = ``fast`` under bfloat16 autocast (not exact); ``int8`` =
``fast`` with the linear layers dynamically quantized to int8 (not exact); ``openvino`` / ``onnxruntime`` =
the network converted to OpenVINO IR / ONNX and run by that runtime in float32 (exact); ``openvino-bf16`` =
OpenVINO with bf16 inference precision (not exact). ``--checkpoint`` benchmarks a trained model instead of
random weights.

Timing: one process builds the eager model and the other modes' copies, warms each up, then runs the modes
**interleaved** - repeat r runs eager, fast, (compiled) back to back - so load changes on the machine hit all
modes alike. Reported: median (and min) seconds per image over ``repeats`` forwards of a random batch, and
the speed-up as the median over repeats of (eager time / mode time) within the same repeat - the paired ratio,
which is robust when other work on the machine slows whole repeats down. Images go straight into the network (no resizing), so the
numbers are the model's. Threads: whatever torch uses by default (all cores); nothing here sets them.

Peak memory: for each (mode, batch size) a fresh Python subprocess builds the model (and its fast copy),
runs 4 forwards and reports its peak resident set (``VmHWM`` in ``/proc/self/status``) and the resident set
just before the first forward, so ``peak - model`` is what inference itself adds. (``ru_maxrss`` is not used:
Linux carries the parent's peak across fork/exec into the child's value.) Linux only; elsewhere "-".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ml.config import LViTConfig
from ml.models import build_model
from ml.models.counting import count_macs, example_inputs
from ml.predict import load_model
from ml.serving import build_engine, cpu_features

# mode -> (backend, precision, compile)
ENGINE_MODES = {
    "fast": ("torch", "fp32", False),
    "compiled": ("torch", "fp32", True),
    "bf16": ("torch", "bf16", False),
    "int8": ("torch", "int8", False),
    "openvino": ("openvino", "fp32", False),
    "openvino-bf16": ("openvino", "bf16", False),
    "onnxruntime": ("onnxruntime", "fp32", False),
}
MODES = ("eager", *ENGINE_MODES)


def _build(cfg: LViTConfig, seed: int, checkpoint: str | None = None) -> nn.Module:
    if checkpoint is not None:
        return load_model(checkpoint)[0].eval()
    torch.manual_seed(seed)
    return build_model(cfg).eval()


def _runner(
    model: nn.Module, mode: str, inputs: tuple[torch.Tensor, ...], cache_dir: str | None = None
) -> Callable[[], torch.Tensor]:
    """A zero-argument callable running one forward pass the way ``mode`` does."""
    if mode == "eager":

        def run() -> torch.Tensor:
            with torch.no_grad():
                return model(*inputs)

        return run
    backend, precision, compile = ENGINE_MODES[mode]
    engine = build_engine(
        model, inputs, backend=backend, precision=precision, compile=compile, cache_dir=cache_dir, verify=False
    )
    images = inputs[0].contiguous(memory_format=torch.channels_last) if engine.channels_last else inputs[0]
    args = (images, *inputs[1:])
    return lambda: engine(*args)


def _status_kb(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in kB (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: peak RSS for one (mode, batch size)."""
    cfg = LViTConfig.from_dict(spec["config"])
    model = _build(cfg, spec["seed"], spec.get("checkpoint"))
    inputs = example_inputs(cfg, spec["batch_size"])
    run = _runner(model, spec["mode"], inputs, spec.get("cache_dir"))
    model_kb = _status_kb("VmRSS")
    for _ in range(4):
        run()
    return {"model_rss_mb": model_kb / 1024, "peak_rss_mb": _status_kb("VmHWM") / 1024}


def measure_memory(
    cfg: LViTConfig,
    mode: str,
    batch_size: int,
    seed: int = 0,
    checkpoint: str | None = None,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Peak RSS of a fresh subprocess running ``mode`` at ``batch_size`` (see the module docstring)."""
    spec = {
        "config": cfg.to_dict(),
        "mode": mode,
        "batch_size": batch_size,
        "seed": seed,
        "checkpoint": checkpoint,
        "cache_dir": cache_dir,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "ml.bench", "--memory-child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_inference_bench(
    variant: str = "T",
    batch_sizes: Sequence[int] = (1, 8),
    repeats: int = 10,
    *,
    with_text: bool = True,
    text_dim: int = 384,
    arch: str = "lvit",
    img_size: int = 224,
    modes: Sequence[str] = ("eager", "fast"),
    warmup: int = 2,
    memory: bool = True,
    seed: int = 0,
    checkpoint: str | None = None,
    cache_dir: str | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Time eager vs fast (vs compiled) inference on CPU; one result row per (batch size, mode).

    Returns dicts with: model, mode, batch_size, repeats, s_per_image (median), s_per_image_min,
    images_per_s, speedup_vs_eager (median paired ratio), speedup_of_min, macs_per_image,
    max_abs_logit_diff (vs eager), setup_s (fast-path preparation or compilation, incl. the first call), and
    peak_rss_mb / model_rss_mb when ``memory``.
    """
    unknown = set(modes) - set(MODES)
    if unknown or "eager" not in modes:
        raise ValueError(f"modes must include 'eager' and come from {MODES}, got {tuple(modes)}")
    if repeats < 1 or warmup < 0 or not batch_sizes or min(batch_sizes) < 1:
        raise ValueError("need repeats >= 1, warmup >= 0 and positive batch sizes")
    if checkpoint is not None:
        model = _build(LViTConfig(), seed, checkpoint)
        cfg = load_model(checkpoint)[1]
    else:
        cfg = LViTConfig(arch=arch, variant=variant, with_text=with_text, text_dim=text_dim, img_size=img_size)
        model = _build(cfg, seed)
    macs = count_macs(model, cfg)
    rows: list[dict[str, Any]] = []
    for batch_size in batch_sizes:
        torch.manual_seed(seed + batch_size)
        inputs = example_inputs(cfg, batch_size)
        inputs = (torch.rand_like(inputs[0]), *(torch.randn_like(t) for t in inputs[1:]))
        runners, setup, outputs = {}, {}, {}
        for mode in modes:
            start = time.perf_counter()
            runners[mode] = _runner(model, mode, inputs, cache_dir)
            outputs[mode] = runners[mode]().float()
            setup[mode] = time.perf_counter() - start
            for _ in range(max(warmup - 1, 0)):
                runners[mode]()
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(repeats):
            for mode in modes:  # interleaved
                start = time.perf_counter()
                runners[mode]()
                times[mode].append((time.perf_counter() - start) / batch_size)
        for mode in modes:
            median = statistics.median(times[mode])
            paired = statistics.median(e / m for e, m in zip(times["eager"], times[mode], strict=True))
            row: dict[str, Any] = {
                "model": f"{cfg.model_name} {cfg.img_size}px" + (" (trained)" if checkpoint else ""),
                "mode": mode,
                "batch_size": batch_size,
                "repeats": repeats,
                "s_per_image": median,
                "s_per_image_min": min(times[mode]),
                "images_per_s": 1.0 / median,
                "speedup_vs_eager": paired,
                "speedup_of_min": min(times["eager"]) / min(times[mode]),
                "macs_per_image": macs,
                "max_abs_logit_diff": float((outputs[mode] - outputs["eager"]).abs().max()),
                "setup_s": setup[mode],
            }
            if memory:
                row.update(measure_memory(cfg, mode, batch_size, seed, checkpoint, cache_dir))
            rows.append(row)
            if log is not None:
                log(format_row(row))
    return rows


TABLE_HEADER = (
    "| model | batch | mode | s / image (median) | min | images / s | speed-up (paired median) | speed-up of mins "
    "| GMACs / image | max abs logit diff | setup s | peak RSS MB (model only) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def format_row(row: dict[str, Any]) -> str:
    memory = f"{row['peak_rss_mb']:.0f} ({row['model_rss_mb']:.0f})" if row.get("peak_rss_mb") else "-"
    return (
        f"| {row['model']} | {row['batch_size']} | {row['mode']} | {row['s_per_image']:.4f} "
        f"| {row['s_per_image_min']:.4f} | {row['images_per_s']:.2f} | {row['speedup_vs_eager']:.2f}x "
        f"| {row['speedup_of_min']:.2f}x "
        f"| {row['macs_per_image'] / 1e9:.2f} | {row['max_abs_logit_diff']:.1e} | {row['setup_s']:.1f} | {memory} |"
    )


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    return "\n".join([TABLE_HEADER, *(format_row(r) for r in rows)])


def machine_summary() -> str:
    """One line: CPU model, cores torch uses, torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    threads = torch.get_num_threads()
    return (
        f"{cpu} (CPU features: {cpu_features().summary()}), torch {torch.__version__}, "
        f"{threads} thread{'' if threads == 1 else 's'}"
    )


RESULTS_SECTION = "## Inference (ml)"


def write_results_section(path: Path, body: str, section: str = RESULTS_SECTION) -> None:
    """Replace the ``section`` block of a Markdown file (up to the next ``## `` heading) with ``body``.

    Creates the file or appends the section when absent; other sections are left as they are.
    """
    text = path.read_text() if path.exists() else "# Results\n"
    block = f"{section}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: Sequence[str] | None = None, prog: str = "python -m ml bench") -> int:
    """Command line: run the benchmark, print the table, optionally rewrite the results section."""
    parser = argparse.ArgumentParser(prog=prog, description="CPU inference benchmark: eager vs fast path.")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="T", choices=["T", "S", "B"])
    parser.add_argument("--arch", default="lvit", choices=["lvit", "unet"])
    parser.add_argument("--no-text", action="store_true", help="benchmark the W model (no text path)")
    parser.add_argument("--text-dim", type=int, default=384)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument(
        "--checkpoint", help="benchmark this trained checkpoint (its own size) instead of random weights"
    )
    parser.add_argument("--cache-dir", help="converted-model cache for the openvino / onnxruntime modes")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["eager", "fast"], choices=MODES)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--threads", type=int, help="torch threads for this run (default: torch's, all cores)")
    parser.add_argument("--results", type=Path, help=f"Markdown file whose '{RESULTS_SECTION}' section to rewrite")
    parser.add_argument("--notes", default="", help="text put under the table in the results section")
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(_memory_child(json.loads(args.memory_child))))
        return 0
    if args.threads:  # command-line entry point only; the library functions above never set threads
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the memory subprocesses inherit it
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = run_inference_bench(
        args.variant,
        args.batch_sizes,
        args.repeats,
        with_text=not args.no_text,
        text_dim=args.text_dim,
        arch=args.arch,
        img_size=args.img_size,
        checkpoint=args.checkpoint,
        cache_dir=args.cache_dir,
        modes=args.modes,
        warmup=args.warmup,
        memory=not args.no_memory,
        log=print,
    )
    table = format_table(rows)
    print()
    print(table)
    if args.results:
        argv_list = list(sys.argv[1:] if argv is None else argv)
        command = " ".join([prog, *(shlex.quote(a) for a in argv_list)])
        body = (
            f"Command: `{command}`\n\nMachine: {machine_summary()}; run {started}, "
            f"1-min load average {load:.1f} at the start.\n\n{table}\n"
        )
        if args.notes:
            body += f"\n{args.notes.strip()}\n"
        write_results_section(args.results, body)
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
