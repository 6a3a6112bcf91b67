"""Inference benchmark on CPU: eager vs fast path (vs torch.compile), seconds per image, MACs, peak memory.

Usage (from the repository root)::

    python bench/bench_inference.py --variant T --batch-sizes 1 8 --repeats 10
    python bench/bench_inference.py --modes eager fast compiled --results docs/results.md

``--results`` rewrites only the "## Inference (ml)" section of that Markdown file (creating the file or the
section if absent) with the table and the exact command. Method: see ``ml/bench.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.bench import MODES, format_table, machine_summary, run_inference_bench

SECTION = "## Inference (ml)"


def write_section(path: Path, body: str) -> None:
    """Replace the ``SECTION`` block (up to the next ``## `` heading) of ``path`` with ``body``."""
    text = path.read_text() if path.exists() else "# Results\n"
    block = f"{SECTION}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="T", choices=["T", "S", "B"])
    parser.add_argument("--arch", default="lvit", choices=["lvit", "unet"])
    parser.add_argument("--no-text", action="store_true", help="benchmark the W model (no text path)")
    parser.add_argument("--text-dim", type=int, default=384)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["eager", "fast"], choices=MODES)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for this run (default: torch's)")
    parser.add_argument("--results", type=Path, help="Markdown file whose '## Inference (ml)' section to rewrite")
    parser.add_argument("--notes", default="", help="text appended under the table in the results section")
    args = parser.parse_args()

    if args.threads:
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
        modes=args.modes,
        warmup=args.warmup,
        memory=not args.no_memory,
        log=print,
    )
    table = format_table(rows)
    print()
    print(table)
    if args.results:
        command = "python " + " ".join(shlex.quote(a) for a in ["bench/bench_inference.py", *sys.argv[1:]])
        body = (
            f"Command: `{command}`\n\nMachine: {machine_summary()}; run {started}, "
            f"1-min load average {load:.1f} at the start.\n\n{table}\n"
        )
        if args.notes:
            body += f"\n{args.notes.strip()}\n"
        write_section(args.results, body)
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
