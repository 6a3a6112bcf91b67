"""Register a checkpoint trained outside the app (e.g. with ``torchrun``) as a candidate model version of a project.

    python deploy/register_checkpoint.py --project 3 --checkpoint runs/retrain/best.pt --name "torchrun 4xGPU"

Run it with the production environment (``deploy/.env``): it uploads the checkpoint through the storage API (S3)
with its SHA-256, exactly as an in-app training job stores its result, and prints the new version as JSON. The
version starts as a candidate; activate it from the models page or with ``POST /api/models/<id>/activate/``, which
also queues the follow-up jobs (re-proposals, EPI update, worklist scoring).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=int, required=True, help="project id")
    parser.add_argument("--checkpoint", type=Path, required=True, help="best.pt written by `python -m ml train`")
    parser.add_argument("--name", default="", help="version name shown in the app (default vN)")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint} is not a file")

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
    import django

    django.setup()

    from ml.config import LViTConfig
    from ml.predict import load_checkpoint
    from server.studio.models import Project
    from server.studio.services.registry import model_version_create

    ckpt = load_checkpoint(args.checkpoint)
    model_cfg = LViTConfig(**ckpt["config"])  # validates the architecture before anything is stored
    project = Project.objects.filter(pk=args.project).first()
    if project is None:
        parser.error(f"no project with id {args.project}")
    metrics = {"val_dice": ckpt["best_dice"]} if isinstance(ckpt.get("best_dice"), float) else {}
    config = {"model": model_cfg.to_dict(), "train": ckpt.get("train_config") or {}, "source": "external"}
    mv = model_version_create(
        project=project,
        checkpoint=args.checkpoint,
        config=config,
        metrics=metrics,
        parent=None,
        training_job=None,
        name=args.name,
    )
    print(json.dumps({"id": mv.pk, "number": mv.number, "name": mv.name, "status": mv.status, "metrics": metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
