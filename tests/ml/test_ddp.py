"""DDP under torchrun with the gloo backend on CPU: 2 processes, semi-supervised, weights stay in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import torch
    from ml.config import LViTConfig
    from ml.train import TrainConfig, Trainer, folder_samples

    data, out = sys.argv[1], sys.argv[2]
    labeled, unlabeled, val = folder_samples(data, labeled_fraction=0.5)
    cfg = TrainConfig(out_dir=out, epochs=2, batch_size=1, prototype_epochs=1, device="cpu", seed=0)
    trainer = Trainer(cfg, LViTConfig(img_size=32, in_channels=1), labeled[:2], val[:2], unlabeled[:2])
    result = trainer.fit()
    digest = hashlib.sha256()
    for name, tensor in sorted(trainer.model.state_dict().items()):
        if "running" not in name and "num_batches" not in name:  # BN buffers are per-rank statistics
            digest.update(tensor.detach().cpu().numpy().tobytes())
    info = {"rank": trainer.rank, "world": trainer.world_size, "weights": digest.hexdigest(),
            "stopped": result.stopped, "epi": {k: trainer.epi.count(k) for k in trainer.epi}}
    with open(os.path.join(out, f"rank{trainer.rank}.json"), "w") as fh:
        json.dump(info, fh)
    torch.distributed.destroy_process_group()
    """
)


@pytest.mark.slow
def test_two_process_gloo_training(shared_data: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(shared_data / "covid_cxr"),
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # DDP kept the replicas identical
    assert ranks[0]["epi"] == ranks[1]["epi"] and set(ranks[0]["epi"].values()) == {1}
    assert all(r["stopped"] == "completed" for r in ranks)
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()  # written once, by rank 0
