"""Serving a converted checkpoint without PyTorch: what lets an inference worker start in seconds.

A worker's cold start was dominated by importing PyTorch (~1.4 s of a ~6 s start on a 2-core CPU) although, on a
CPU, the network itself runs in OpenVINO from an IR converted once into the serving cache. This module serves that
IR with numpy alone, so a worker whose active models are already converted never imports torch:

- :func:`write_manifest` (called by :meth:`ml.predict.Predictor.write_lite_manifest` after the torch predictor has
  built **and verified** a float32 OpenVINO engine in a kept cache) records, under the checkpoint's SHA-256, the
  IR's file name, the network's config and the threshold.
- :meth:`LitePredictor.load` finds that manifest by the checkpoint's SHA-256 (the studio records it for every model
  version) and compiles the IR; it returns ``None`` when there is no manifest, when it was written by another
  OpenVINO version, or when the IR is gone: the caller then builds the torch :class:`ml.predict.Predictor` (which
  converts, verifies and writes the manifest for the next start).
- :meth:`LitePredictor.predict` is :meth:`ml.predict.Predictor.predict` in numpy: the same steps (the module
  docstring of ``ml.predict``), with the bilinear resizes written as the separable weight matrices PyTorch's
  ``F.interpolate(mode="bilinear", align_corners=False, antialias=...)`` uses. Probabilities agree with the torch
  predictor's within :data:`PROB_TOLERANCE` (tested on trained checkpoints; measured ~1e-6), masks equal but for
  pixels within that distance of the threshold.

bf16 engines (the default where the CPU has native bf16) are served too: OpenVINO's bf16 compile gave wrong masks in
some processes (docs/results.md), so ``ml.serving`` checks a bf16 engine at every start; here the check runs against
the same IR compiled in float32 (itself verified exact against the eager model when it was converted), with the same
bound (:func:`bf16_ok`), and a failure makes :meth:`LitePredictor.load` raise, so the worker falls back to the torch
predictor.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml.config import LViTConfig
from ml.cpu import cpu_features

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
PROB_TOLERANCE = 1e-4  # max |probability - torch predictor's probability| (tested, float32 engines)
PRECISIONS = ("fp32", "bf16")
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL "L" (ml.predict uses the same)


class EngineMismatchError(RuntimeError):
    """A bf16 compile's logits differ from the float32 compile's by more than bf16 allows."""


def bf16_ok(mean_abs_diff: float, ref_std: float) -> bool:
    """The bf16 bound of every engine check: mean |logit difference| below 5 % of the logits' spread (measured on
    trained checkpoints: ~1 %; the converter faults seen with OpenVINO bf16 were > 50 %)."""
    return mean_abs_diff <= 0.05 * ref_std + 1e-3


@dataclass(frozen=True)
class Prediction:
    """One image's result: ``probability`` float32 (H, W) in [0, 1], ``mask`` bool (H, W), ``uncertainty``."""

    probability: np.ndarray
    mask: np.ndarray
    uncertainty: float


def manifest_path(cache_dir: str | os.PathLike[str], checkpoint_sha256: str) -> Path:
    if len(checkpoint_sha256) != 64 or any(c not in "0123456789abcdef" for c in checkpoint_sha256):
        raise ValueError(f"checkpoint_sha256 must be 64 lowercase hex digits, got {checkpoint_sha256!r}")
    return Path(cache_dir) / f"lite-{checkpoint_sha256}.json"


def write_manifest(
    cache_dir: str | os.PathLike[str],
    checkpoint_sha256: str,
    *,
    ir_xml: Path,
    config: LViTConfig,
    threshold: float,
    openvino_version: str,
    precision: str = "fp32",
) -> Path:
    """Record that ``ir_xml`` (in ``cache_dir``, verified against the eager model) serves that checkpoint, compiled in
    ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    path = manifest_path(cache_dir, checkpoint_sha256)
    if Path(ir_xml).parent.resolve() != path.parent.resolve():
        raise ValueError(f"the IR {ir_xml} is not in the serving cache {cache_dir}")
    data = {
        "format": MANIFEST_FORMAT,
        "checkpoint_sha256": checkpoint_sha256,
        "ir": Path(ir_xml).name,
        "openvino": openvino_version,
        "precision": precision,
        "threshold": threshold,
        "config": config.to_dict(),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lite-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ------------------------------------------------------------------------------- numpy pre/post-processing


def as_chw_float(image: np.ndarray) -> np.ndarray:
    """numpy (H, W) / (H, W, C) -> float32 (C, H, W) in [0, 1] (uint8 / 255, uint16 / 65535, float as is)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"images must be numpy arrays, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"numpy images must be (H, W) or (H, W, 1|3|4), got {image.shape}")
    chw = np.transpose(image, (2, 0, 1))[:3]  # drop alpha
    if image.dtype == np.uint8:
        return chw.astype(np.float32) / np.float32(255.0)
    if image.dtype == np.uint16:
        return chw.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(image.dtype, np.floating):
        return chw.astype(np.float32)
    raise ValueError(f"unsupported image dtype {image.dtype}; use uint8, uint16 or float in [0, 1]")


def match_channels(x: np.ndarray, channels: int) -> np.ndarray:
    if x.shape[0] == channels:
        return x
    if channels == 3:  # gray -> RGB
        return np.broadcast_to(x, (3, *x.shape[1:]))
    weights = np.asarray(LUMA, dtype=np.float32).reshape(3, 1, 1)
    return (x * weights).sum(0, keepdims=True, dtype=np.float32)  # RGB -> gray


@functools.lru_cache(maxsize=64)
def resize_weights(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """(out_size, in_size) float32 bilinear weights of PyTorch's ``F.interpolate(align_corners=False)``: with
    ``antialias`` its triangle filter stretched by the shrink factor (PIL's BILINEAR), else plain bilinear.
    Cached (read-only): a worker resizes every upload of the same size to the network's size and back."""
    w = _resize_weights(in_size, out_size, antialias).astype(np.float32)
    w.setflags(write=False)
    return w


def _resize_weights(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    scale = in_size / out_size
    w = np.zeros((out_size, in_size), dtype=np.float64)
    if antialias:
        support = scale if scale >= 1.0 else 1.0
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        for i in range(out_size):
            center = scale * (i + 0.5)
            lo = max(int(center - support + 0.5), 0)
            hi = min(int(center + support + 0.5), in_size)
            j = np.arange(lo, hi)
            taps = np.clip(1.0 - np.abs((j - center + 0.5) * invscale), 0.0, None)
            total = taps.sum()
            w[i, lo:hi] = taps / total if total > 0 else taps
        return w
    for i in range(out_size):
        src = max(scale * (i + 0.5) - 0.5, 0.0)
        i0 = min(int(src), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        frac = src - i0
        w[i, i0] += 1.0 - frac
        w[i, i1] += frac
    return w


def resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (..., H, W) float32; antialiased when shrinking in either dimension (as ml.predict)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    shrink = size[0] < h or size[1] < w
    wy = resize_weights(h, size[0], shrink)
    wx = resize_weights(w, size[1], shrink)
    return np.matmul(np.matmul(wy, x), wx.T)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def binary_entropy_score(prob: np.ndarray) -> np.ndarray:
    """Mean binary entropy in bits over all but the first axis: (N, ...) -> (N,), each in [0, 1]."""
    p = np.clip(prob.astype(np.float64), 1e-12, 1 - 1e-12)
    h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return h.reshape(h.shape[0], -1).mean(1)


# ------------------------------------------------------------------------------------------------ predictor


class LitePredictor:
    """A checkpoint's verified OpenVINO IR, served with numpy (see the module docstring)."""

    backend = "openvino"

    def __init__(
        self, xml: Path, cfg: LViTConfig, *, threshold: float, threads: int | None = None, precision: str = "fp32"
    ) -> None:
        import openvino as ov

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.cfg = cfg
        self.threshold = threshold
        self.precision = precision
        core = ov.Core()
        model = core.read_model(xml, xml.with_suffix(".bin"))

        def compile(hint: str) -> Any:
            config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            return core.compile_model(model, "CPU", config)

        self.compiled = compile("bf16" if precision == "bf16" else "f32")
        self.request = self.compiled.create_infer_request()
        self._lock = threading.Lock()
        if precision == "bf16":
            self.verify(compile("f32"))

    def example_inputs(self, n: int = 1, seed: int = 0) -> list[np.ndarray]:
        """Seeded random inputs of the network's shapes: images in [0, 1], text and zone maps standard normal (as
        ``ml.serving.verify_engine`` draws them)."""
        cfg, rng = self.cfg, np.random.default_rng(seed)
        side = (n, cfg.in_channels, cfg.img_size, cfg.img_size)
        inputs = [rng.random(side, dtype=np.float32)]
        if cfg.uses_text:
            inputs.append(rng.standard_normal((n, cfg.text_len, cfg.text_dim)).astype(np.float32))
        if cfg.uses_zones:
            from ml.zones import ZONE_CHANNELS

            inputs.append(rng.standard_normal((n, ZONE_CHANNELS, cfg.img_size, cfg.img_size)).astype(np.float32))
        return inputs

    def verify(self, reference: Any) -> float:
        """Compare this (bf16) compile with ``reference`` (the float32 compile of the same IR); raise on a mismatch.
        Returns the mean absolute logit difference."""
        inputs = self.example_inputs()
        ref = np.asarray(reference(inputs)[0], dtype=np.float64)
        diff = np.abs(self.logits(*inputs).astype(np.float64) - ref)
        std = float(ref.std(ddof=1)) if ref.size > 1 else 0.0
        if not bf16_ok(float(diff.mean()), std):
            raise EngineMismatchError(
                f"openvino/bf16 logits differ from the float32 compile: max {diff.max():.3g}, mean {diff.mean():.3g} "
                f"(logit std {std:.3g})"
            )
        return float(diff.mean())

    @classmethod
    def load(
        cls, cache_dir: str | os.PathLike[str] | None, checkpoint_sha256: str, *, threads: int | None = None
    ) -> LitePredictor | None:
        """The predictor for that checkpoint, or ``None`` when the cache holds no usable manifest for it."""
        if not cache_dir or not checkpoint_sha256:
            return None
        try:
            import openvino as ov
        except ImportError:
            return None
        path = manifest_path(cache_dir, checkpoint_sha256)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("unreadable serving manifest %s (%s); loading with torch", path, exc)
            return None
        if data.get("format") != MANIFEST_FORMAT or data.get("openvino") != ov.__version__:
            return None
        precision = data.get("precision", "fp32")
        if precision == "bf16" and not cpu_features().bf16:  # a cache carried to a CPU without native bf16
            return None
        xml = path.parent / str(data.get("ir", ""))
        if not xml.is_file() or not xml.with_suffix(".bin").is_file():
            return None
        cfg = LViTConfig.from_dict(data["config"])
        return cls(xml, cfg, threshold=float(data["threshold"]), threads=threads, precision=precision)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "device": "cpu",
            "torch": False,
            "cpu_features": cpu_features().summary(),
        }

    def logits(self, *inputs: np.ndarray) -> np.ndarray:
        arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in inputs]
        with self._lock:
            self.request.infer(arrays)
            return self.request.get_output_tensor(0).data.copy()

    def predict(
        self,
        images: Sequence[np.ndarray],
        text: np.ndarray | Sequence[np.ndarray] | None = None,
        *,
        batch_size: int = 8,
        sentences: Sequence[str] | None = None,
    ) -> list[Prediction]:
        """As :meth:`ml.predict.Predictor.predict` for a list of numpy images (sizes may differ)."""
        cfg = self.cfg
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batch = list(images)
        if not batch:
            return []
        text_all = None
        if cfg.uses_text:
            if text is None:
                raise ValueError(f"{cfg.model_name} needs text features ({cfg.text_len}, {cfg.text_dim}) per image")
            text_all = np.asarray(np.stack(list(text)) if isinstance(text, list | tuple) else text, np.float32)
            if text_all.shape != (len(batch), cfg.text_len, cfg.text_dim):
                raise ValueError(
                    f"text must be ({len(batch)}, {cfg.text_len}, {cfg.text_dim}) for {len(batch)} images, "
                    f"got {text_all.shape}"
                )
        elif text is not None:
            raise ValueError(f"{cfg.model_name} takes no text; pass text=None")
        if cfg.uses_zones and (sentences is None or len(sentences) != len(batch)):
            raise ValueError(f"{cfg.model_name} needs one report sentence per image (sentences=...)")
        side = (cfg.img_size, cfg.img_size)
        results: list[Prediction] = []
        for start in range(0, len(batch), batch_size):
            chunk = batch[start : start + batch_size]
            arrays = [match_channels(as_chw_float(im), cfg.in_channels) for im in chunk]
            sizes = [a.shape[-2:] for a in arrays]
            x = np.clip(np.stack([resize(a, side) for a in arrays]), 0.0, 1.0)
            inputs: list[np.ndarray] = [x]
            if text_all is not None:
                inputs.append(text_all[start : start + len(chunk)])
            if cfg.uses_zones:
                from ml.zones import zone_prior

                gray = np.rint(x[:, 0] * np.float32(255)).astype(np.uint8)  # the first channel, as the dataset
                reports = list(sentences or [])[start : start + len(chunk)]
                inputs.append(np.stack([zone_prior(s, g) for s, g in zip(reports, gray, strict=True)]))
            prob = sigmoid(self.logits(*inputs)[:, :1])  # (n, 1, S, S)
            scores = binary_entropy_score(prob)
            for i, size in enumerate(sizes):
                full = np.clip(resize(prob[i, 0], tuple(size)), 0.0, 1.0).astype(np.float32)
                results.append(Prediction(full, full > self.threshold, float(scores[i])))
        return results
