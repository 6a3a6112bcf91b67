"""Worker settings: read from Django settings when set there, else from the environment (validated)."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from django.conf import settings

from server.config import ConfigError, env_bool, env_int, env_str

TEXT_ENGINES = ("auto", "torch", "openvino")


def checkpoint_cache_dir() -> Path:
    """Local folder for checkpoints downloaded from storage, keyed by ModelVersion id (per host)."""
    raw = getattr(settings, "LVIT_CHECKPOINT_CACHE_DIR", None) or env_str(
        "LVIT_CHECKPOINT_CACHE_DIR", str(Path(tempfile.gettempdir()) / "lvit-checkpoints")
    )
    path = Path(raw)
    path.mkdir(parents=True, exist_ok=True)
    return path


def serving_cache_dir() -> Path:
    """Where converted inference models (OpenVINO IR, ONNX) are kept across worker restarts, keyed by weights
    hash: ``LVIT_SERVING_CACHE``, else ``serving/`` in the checkpoint cache. Without it every worker start converts
    the active model again (tens of seconds on CPU; docs/results.md, "Worker cold start")."""
    raw = env_str("LVIT_SERVING_CACHE", "") or str(checkpoint_cache_dir() / "serving")
    path = Path(raw)
    path.mkdir(parents=True, exist_ok=True)
    return path


def text_engine() -> str:
    """The text model's engine in a worker: ``LVIT_TEXT_ENGINE`` (``auto``: OpenVINO when it is installed, the
    features equal transformers' within 1e-4 and a worker starts without importing transformers; else torch)."""
    raw = env_str("LVIT_TEXT_ENGINE", "auto").strip().lower() or "auto"
    if raw not in TEXT_ENGINES:
        raise ConfigError(f"LVIT_TEXT_ENGINE={raw!r}: use one of {', '.join(TEXT_ENGINES)}")
    if raw == "auto":
        return "openvino" if importlib.util.find_spec("openvino") is not None else "torch"
    return raw


def cpu_threads() -> int | None:
    """``LVIT_TORCH_THREADS``: the process's intra-op threads for PyTorch and the OpenVINO engines (``None``: the
    libraries' default, every core)."""
    return env_int("LVIT_TORCH_THREADS", 0, minimum=0) or None


def torch_free_serving() -> bool:
    """Serve a converted checkpoint with :class:`ml.lite.LitePredictor` (OpenVINO + numpy, no torch import) when the
    serving cache holds its verified IR (float32, or bf16 checked against the float32 compile at every load):
    ``LVIT_TORCH_FREE_SERVING`` (default on), CPU workers only. A worker whose active models are converted then
    starts without importing PyTorch (docs/results.md, "Worker cold start"); anything else (a new version, a GPU, a
    bf16 compile that fails its check) loads through PyTorch as before."""
    return env_bool("LVIT_TORCH_FREE_SERVING", True) and str(settings.ML_DEVICE) == "cpu"
