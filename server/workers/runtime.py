"""Process-level cache of what a GPU worker keeps loaded: the active model per project and the text embedder.

A task asks for the project's active model; the cache compares the active version's id with the one it
holds and reloads only when it changed (promotion or rollback). Checkpoints come from Django's storage
(never a shared local path): they are downloaded once per host into a local cache folder keyed by the
ModelVersion id and verified against the SHA-256 recorded at creation.

``ml`` is imported where a model or an embedder is built (a worker's first task), not when the module loads.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from server.studio import selectors
from server.studio.models import ModelVersion
from server.studio.storage import sha256_file
from server.workers import conf

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One case's prediction at the image's own size."""

    prob: np.ndarray  # (H, W) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool
    uncertainty: float


class LoadedModel:
    """A model version loaded for inference plus the embedder its text needs.

    The predictor is an :class:`ml.lite.LitePredictor` (OpenVINO + numpy, no torch) when the serving cache holds
    the checkpoint's verified IR and ``conf.torch_free_serving()``; else an ``ml.predict.Predictor``, which
    converts and verifies the IR and records it (``write_lite_manifest``) so that the next start is torch-free.
    """

    def __init__(self, model_version: ModelVersion, checkpoint: Path, embedder: Any) -> None:
        self.model_version_id = model_version.pk
        self.number = model_version.number
        cache = conf.serving_cache_dir()
        digest = model_version.config.get("checkpoint_sha256") or sha256_file(checkpoint)
        self.predictor: Any = None
        if conf.torch_free_serving():
            from ml.lite import LitePredictor

            try:
                self.predictor = LitePredictor.load(cache, digest, threads=conf.cpu_threads())
            except Exception:  # a damaged cache entry: convert again through torch
                logger.warning("torch-free load of model version %s failed", model_version.pk, exc_info=True)
        if self.predictor is None:
            from server.workers.budget import apply_torch_budget

            apply_torch_budget()
            from ml.predict import Predictor

            self.predictor = Predictor.from_checkpoint(checkpoint, device=settings.ML_DEVICE, cache_dir=cache)
            try:
                self.predictor.write_lite_manifest(cache, digest)
            except (OSError, ValueError):
                logger.warning(
                    "could not record model version %s for torch-free serving", model_version.pk, exc_info=True
                )
        self.config = self.predictor.cfg
        self.embedder = embedder

    def predict(self, images: list[np.ndarray], sentences: list[str], batch_size: int = 8) -> list[Prediction]:
        """uint8 images (H, W) or (H, W, C) of any size with their report sentences -> per-image predictions."""
        text = self.embedder.embed_many(sentences) if self.config.uses_text else None  # (N, L, D), cached
        zones = sentences if self.config.uses_zones else None  # lvit_zones renders the report as a zone prior
        out = self.predictor.predict(images, text, batch_size=batch_size, sentences=zones)
        return [Prediction(prob=r.probability, mask=r.mask, uncertainty=r.uncertainty) for r in out]


class WorkerRuntime:
    """What one worker process keeps loaded between tasks. Thread-safe; one instance per process."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._embedders: dict[int, Any] = {}
        self._models: dict[int, LoadedModel] = {}  # project id -> its active model as last seen
        self.loads = 0  # number of checkpoint loads (a warm worker does not reload)

    def embedder(self, length: int | None = None) -> Any:
        """The text embedder for ``length`` words (``None``: ml's default length), built once per length."""
        from ml.text import DEFAULT_LENGTH, TextEmbedder

        length = length or DEFAULT_LENGTH
        with self._lock:
            if length not in self._embedders:
                self._embedders[length] = TextEmbedder(
                    settings.LVIT_TEXT_MODEL or None,
                    length=length,
                    cache_dir=settings.LVIT_TEXT_CACHE_DIR,
                    device="cpu",
                    engine=conf.text_engine(),
                    engine_cache_dir=conf.serving_cache_dir(),
                )
            return self._embedders[length]

    def active(self, project_id: int) -> tuple[LoadedModel, bool] | None:
        """The project's active model, loaded; ``(model, loaded_now)``. ``None`` without an active version."""
        mv = selectors.model_version_active(project_id=project_id)
        if mv is None:
            return None
        with self._lock:
            held = self._models.get(project_id)
            if held is not None and held.model_version_id == mv.pk:
                return held, False
            model = self.load(mv)
            self._models[project_id] = model
            return model, True

    def load(self, mv: ModelVersion) -> LoadedModel:
        """Load any version (uncached; e.g. a candidate to evaluate)."""
        model = LoadedModel(mv, local_checkpoint(mv), self.embedder(text_length(mv)))
        self.loads += 1
        logger.info("loaded model version %s (#%s) of project %s", mv.pk, mv.number, mv.project_id)
        return model

    def forget(self) -> None:
        with self._lock:
            self._models.clear()


def text_length(mv: ModelVersion) -> int | None:
    """The number of words the version's text path expects (``None``: a config without one, ml's default)."""
    value = (mv.config.get("model") or {}).get("text_len")
    return int(value) if value is not None else None


def local_checkpoint(mv: ModelVersion) -> Path:
    """The version's checkpoint as a local file: downloaded from storage once, verified, renamed into place."""
    digest = mv.config.get("checkpoint_sha256", "")
    path = conf.checkpoint_cache_dir() / f"mv-{mv.pk}-{digest[:16] or 'nohash'}.pt"
    if path.is_file():
        return path
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as out, default_storage.open(mv.checkpoint.name, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
        if digest and sha256_file(Path(tmp)) != digest:
            raise OSError(f"checkpoint of model version {mv.pk} does not match its recorded SHA-256")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


runtime = WorkerRuntime()
