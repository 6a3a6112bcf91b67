"""Inference benchmark on CPU: eager vs fast path (vs torch.compile / bf16), seconds per image, MACs, peak memory.

Usage (from the repository root; same as ``python -m ml bench ...``)::

    python bench/bench_inference.py --variant T --batch-sizes 1 8 --repeats 10
    python bench/bench_inference.py --threads 1 --modes eager fast compiled bf16 --results docs/results.md

``--results`` rewrites only the "## Inference (ml)" section of that Markdown file (creating the file or the
section if absent) with the table and the exact command. Method: see ``ml/bench.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.bench import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python bench/bench_inference.py"))
