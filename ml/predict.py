"""Checkpoints and the inference predictor.

Checkpoint format (``torch.save`` of a dict)::

    {"config": LViTConfig.to_dict(), "model": state_dict, "optimizer": ..., "epoch": ..., "best_metric": ...}

``config`` and ``model`` are required; everything else is optional and passed through. Files are written to a
temporary name in the target folder and renamed with ``os.replace``, so a reader never sees a half-written
checkpoint.

``Predictor`` loads a checkpoint once and segments images of any size:

1. image -> float [0, 1] (uint8 / 255, uint16 / 65535; float input must already be in [0, 1]), gray <-> RGB
   to the model's channel count (gray = ITU-R 601 luma, as PIL's ``convert("L")`` in ``ml.data``);
2. resize to ``img_size`` bilinear (antialiased when shrinking, which matches the PIL resize used in training);
3. model -> logits -> sigmoid probabilities at ``img_size``; uncertainty is computed there;
4. probabilities resized bilinear back to the image's (H, W); mask = probability > threshold (0.5).

Uncertainty score: mean binary entropy of the probability map at the model's resolution, in bits, so it lies
in [0, 1]: 0 when every pixel is predicted 0 or 1 with certainty, 1 when every pixel is 0.5. It rises
monotonically as any pixel's probability moves toward 0.5, and it does not depend on the image's size.

Engines (``ml.serving``): by default the predictor runs the engine the measurements justify for this CPU
(``backend="auto"``, ``precision="auto"``): with a place to keep converted models (``cache_dir`` or
``$LVIT_SERVING_CACHE``), OpenVINO in bfloat16 on CPUs with native bf16, AMX-BF16 or AVX512-BF16 (masks of
trained checkpoints at Dice >= 0.995 against the eager model's) and in float32 on other CPUs; otherwise, on CUDA, or without OpenVINO,
PyTorch's exact fast path. The float32 engines are exact: logits within ``FAST_TOLERANCE`` = 1e-3
of the eager model's (measured < 1e-5). ``fast=False`` runs the eager model as trained; ``compile=True`` adds
``torch.compile`` to the PyTorch fast path. See ``docs/results.md`` for speed and mask agreement per engine.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ml.config import LViTConfig
from ml.lite import LUMA as LUMA
from ml.lite import Prediction as Prediction
from ml.lite import write_manifest
from ml.models import build_model
from ml.models.counting import example_inputs
from ml.serving import FP32_TOLERANCE, Engine, build_engine, cpu_features
from ml.serving import optimize_for_inference as optimize_for_inference
from ml.serving import unwrap_model as _unwrap

FAST_TOLERANCE = FP32_TOLERANCE  # max |logit_fast - logit_eager| guaranteed (and tested) for float32 engines

ImageLike = np.ndarray | torch.Tensor

# ------------------------------------------------------------------------------------------------ checkpoints


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, cfg: LViTConfig, /, **extra: Any) -> Path:
    """Write ``{"config", "model", **extra}`` atomically (temp file in the same folder, fsync, ``os.replace``).

    ``extra`` values should be plain Python values or tensors (``load_checkpoint`` uses ``weights_only``);
    an ``optimizer`` given as a ``torch.optim.Optimizer`` is stored as its ``state_dict()``.
    """
    if not isinstance(cfg, LViTConfig):
        raise ValueError(f"cfg must be an LViTConfig, got {type(cfg).__name__}")
    reserved = {"config", "model"} & set(extra)
    if reserved:
        raise ValueError(f"extra keys {sorted(reserved)} are reserved")
    if isinstance(extra.get("optimizer"), torch.optim.Optimizer):
        extra["optimizer"] = extra["optimizer"].state_dict()
    payload = {"config": cfg.to_dict(), "model": _unwrap(model).state_dict(), **extra}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; ``ckpt["config"]`` stays a dict.

    Raises ``ValueError`` if the file lacks the ``config`` / ``model`` entries.
    """
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or not {"config", "model"} <= set(ckpt):
        raise ValueError(f"{path} is not an LViT checkpoint (needs 'config' and 'model' entries)")
    return ckpt


def load_model(
    path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu"
) -> tuple[nn.Module, LViTConfig, dict[str, Any]]:
    """Build the network a checkpoint describes and load its weights. Returns (model in eval mode, cfg, ckpt)."""
    ckpt = load_checkpoint(path, map_location)
    cfg = LViTConfig.from_dict(ckpt["config"])
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    if map_location is not None:
        model.to(map_location)
    return model.eval(), cfg, ckpt


# -------------------------------------------------------------------------------------------------- predictor


def binary_entropy_score(prob: torch.Tensor) -> torch.Tensor:
    """Mean binary entropy in bits over all but the first dim: (N, ...) -> (N,), each in [0, 1]."""
    p = prob.double().clamp(1e-12, 1 - 1e-12)
    h = -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
    return h.flatten(1).mean(1)


def _as_chw_float(image: ImageLike) -> torch.Tensor:
    """numpy (H, W) / (H, W, C) or tensor (H, W) / (C, H, W) -> float32 tensor (C, H, W) in [0, 1]."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise ValueError(f"numpy images must be (H, W) or (H, W, 1|3|4), got {image.shape}")
        dtype = image.dtype
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
            raise ValueError(f"tensor images must be (H, W) or (1|3|4, H, W), got {tuple(image.shape)}")
        dtype = image.dtype
        t = image.detach().cpu()
    else:
        raise ValueError(f"images must be numpy arrays or torch tensors, got {type(image).__name__}")
    if t.shape[0] == 4:
        t = t[:3]  # drop alpha
    if dtype in (np.uint8, torch.uint8):
        return t.float() / 255.0
    if dtype in (np.uint16, torch.uint16):
        return t.float() / 65535.0
    if t.is_floating_point():
        return t.float()
    raise ValueError(f"unsupported image dtype {dtype}; use uint8, uint16 or float in [0, 1]")


def _match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[0] == channels:
        return x
    if channels == 3:  # gray -> RGB
        return x.expand(3, -1, -1)
    weights = torch.tensor(LUMA, dtype=x.dtype).view(3, 1, 1)
    return (x * weights).sum(0, keepdim=True)  # RGB -> gray


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W); antialiased when shrinking (like PIL's BILINEAR)."""
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


class Predictor:
    """Segments images with a model loaded once.

    Args:
        model: the trained network (any of ``build_model``'s, or any module taking ``(images[, text])``). The
            engines work on a copy; with ``fast=False`` the model itself is moved to ``device`` and put in eval
            mode.
        cfg: its config.
        device: where to run (``"cpu"``, ``"cuda"``, ...).
        backend: ``"auto"`` (the measured default for this CPU, :func:`ml.serving.default_engine`; OpenVINO only
            with a ``cache_dir``), ``"torch"``,
            ``"openvino"`` or ``"onnxruntime"``.
        precision: ``"auto"``, ``"fp32"`` (exact: logits within ``FAST_TOLERANCE`` of eager), ``"bf16"`` (CPU
            with AVX512-BF16/AMX, or CUDA; masks of trained checkpoints measured within Dice 0.995 of eager's) or
            ``"int8"`` (torch only: dynamic int8 quantization of the transformer's linear layers).
        fast: ``False`` runs the eager model as trained (PyTorch, float32).
        compile: ``torch.compile`` the PyTorch fast path (off by default; first call per batch shape compiles).
        threshold: probability above which a pixel is in the mask.
        cache_dir: where converted models (OpenVINO IR, ONNX) are kept across processes; default: the
            ``LVIT_SERVING_CACHE`` environment variable, else convert in a temporary folder every time.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: LViTConfig,
        *,
        device: str | torch.device = "cpu",
        backend: str = "auto",
        precision: str = "auto",
        fast: bool = True,
        compile: bool = False,
        threshold: float = 0.5,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(cfg, LViTConfig):
            raise ValueError(f"cfg must be an LViTConfig, got {type(cfg).__name__}")
        if precision not in ("auto", "fp32", "bf16", "int8"):
            raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'int8', got {precision!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if compile and not fast:
            raise ValueError("compile=True needs fast=True")
        self.cfg = cfg
        self.device = torch.device(device)
        self.threshold = threshold
        self.engine: Engine = build_engine(
            model,
            example_inputs(cfg, 1),
            backend=backend,
            precision=precision,
            device=self.device,
            fast=fast,
            compile=compile,
            cache_dir=cache_dir,
        )
        self.backend = self.engine.backend
        self.precision = self.engine.precision
        self.compiled = compile

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu", **kwargs: Any
    ) -> Predictor:
        """Load ``path`` (see :func:`save_checkpoint`) and build a predictor; ``kwargs`` as for ``__init__``."""
        model, cfg, _ = load_model(path, map_location=device)
        return cls(model, cfg, device=device, **kwargs)

    def write_lite_manifest(self, cache_dir: str | os.PathLike[str] | None, checkpoint_sha256: str) -> Path | None:
        """Let :class:`ml.lite.LitePredictor` serve this checkpoint without torch from now on: possible when the
        engine is a verified OpenVINO IR (float32 or bf16) kept in ``cache_dir``; returns the manifest written, else
        None."""
        ir = getattr(self.engine, "ir_xml", None)
        if not cache_dir or ir is None or self.backend != "openvino" or self.precision not in ("fp32", "bf16"):
            return None
        import openvino as ov

        return write_manifest(
            cache_dir, checkpoint_sha256, ir_xml=ir, config=self.cfg, threshold=self.threshold,
            openvino_version=ov.__version__, precision=self.precision,
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """What runs: backend, precision, device, and the CPU features the default was chosen from."""
        return {**self.engine.describe(), "cpu_features": cpu_features().summary()}

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> float:
        """Run one forward per batch size on blank inputs (first-call allocations, shape-specific kernels,
        compilation) so the first real request does not pay for them. Returns the seconds it took."""
        start = time.perf_counter()
        for n in batch_sizes:
            inputs = example_inputs(self.cfg, n)
            self.logits(*inputs)
        return time.perf_counter() - start

    def _text_batch(self, text: Any, n: int) -> torch.Tensor | None:
        cfg = self.cfg
        if not cfg.uses_text:
            if text is not None:
                raise ValueError(f"{cfg.model_name} takes no text; pass text=None")
            return None
        if text is None:
            raise ValueError(f"{cfg.model_name} needs text features ({cfg.text_len}, {cfg.text_dim}) per image")
        if isinstance(text, list | tuple):
            text = torch.stack([torch.as_tensor(t) for t in text])
        t = torch.as_tensor(text).float()
        if t.ndim == 2:
            t = t[None]
        if tuple(t.shape) != (n, cfg.text_len, cfg.text_dim):
            raise ValueError(f"text must be ({n}, {cfg.text_len}, {cfg.text_dim}) for {n} images, got {tuple(t.shape)}")
        return t

    def logits(
        self, images: torch.Tensor, text: torch.Tensor | None = None, zones: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Raw model call on a prepared batch (N, C, S, S) float in [0, 1] -> float32 logits (N, K, S, S);
        ``zones`` (N, ZONE_CHANNELS, S, S) for ``lvit_zones`` models."""
        x = images.to(self.device, torch.float32)
        if self.engine.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        args = (x,) if text is None else (x, text.to(self.device, torch.float32))
        if zones is not None:
            z = zones.to(self.device, torch.float32)
            args = (*args, z.contiguous(memory_format=torch.channels_last) if self.engine.channels_last else z)
        return self.engine(*args).float()

    def _padded_logits(
        self, images: torch.Tensor, text: torch.Tensor | None, batch_size: int, zones: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A compiled model is specialised to one batch shape: pad a short last batch instead of recompiling."""
        n = images.shape[0]
        if not self.compiled or n == batch_size:
            return self.logits(images, text, zones)

        def pad(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else torch.cat([t, t.new_zeros((batch_size - n, *t.shape[1:]))])

        return self.logits(pad(images), pad(text), pad(zones))[:n]

    def _zones(self, x: torch.Tensor, sentences: Sequence[str] | None) -> torch.Tensor | None:
        """The zone prior of each resized image (N, C, S, S) in [0, 1] and its report, for ``lvit_zones``."""
        if not self.cfg.uses_zones:
            return None
        if sentences is None or len(sentences) != x.shape[0]:
            raise ValueError(f"{self.cfg.model_name} needs one report sentence per image (sentences=...)")
        from ml.zones import zone_prior

        gray = np.rint(x[:, 0].cpu().numpy() * 255).astype(np.uint8)  # the first channel, as the dataset does
        return torch.from_numpy(np.stack([zone_prior(s, g) for s, g in zip(sentences, gray, strict=True)]))

    def predict(
        self,
        images: ImageLike | Sequence[ImageLike],
        text: Any = None,
        *,
        batch_size: int = 8,
        sentences: Sequence[str] | None = None,
    ) -> list[Prediction]:
        """Segment one image or a batch of images of any sizes.

        Args:
            images: one image, a list of images (sizes may differ), or a 4-d stack of same-size images.
                numpy arrays are (H, W) or (H, W, C) (image layout, stacks (N, H, W, C)); tensors are (H, W) or
                (C, H, W) (torch layout, stacks (N, C, H, W)); uint8, uint16, or float in [0, 1].
            text: word features, (L, D) per image: an array / tensor (N, L, D) (or (L, D) for a single
                image), or a sequence of (L, D). Required iff the model uses text.
            batch_size: images per forward pass.
            sentences: the report sentence of each image; required by ``lvit_zones`` models, which render it
                as a lung-zone prior on the resized image (:func:`ml.zones.zone_prior`).

        Returns:
            one :class:`Prediction` per image, at the image's full size (class 0 for multi-class models).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        single = isinstance(images, np.ndarray | torch.Tensor) and images.ndim in (2, 3)
        batch = [images] if single else list(images)  # one image, a list, or the first axis of a 4-d stack
        if not batch:
            return []
        text_all = self._text_batch(text, len(batch))
        if self.cfg.uses_zones and (sentences is None or len(sentences) != len(batch)):
            raise ValueError(f"{self.cfg.model_name} needs one report sentence per image (sentences=...)")
        results: list[Prediction] = []
        for start, chunk in _chunks(batch, batch_size):
            tensors = [_match_channels(_as_chw_float(im), self.cfg.in_channels) for im in chunk]
            sizes = [tuple(t.shape[-2:]) for t in tensors]
            side = (self.cfg.img_size, self.cfg.img_size)
            x = torch.cat([_resize(t[None], side) for t in tensors]).clamp_(0.0, 1.0)
            t = None if text_all is None else text_all[start : start + len(chunk)]
            z = self._zones(x, None if sentences is None else list(sentences)[start : start + len(chunk)])
            prob = torch.sigmoid(self._padded_logits(x, t, batch_size, z)[:, :1]).cpu()  # (n, 1, S, S)
            scores = binary_entropy_score(prob)
            for i, size in enumerate(sizes):
                full = _resize(prob[i : i + 1], size)[0, 0].clamp_(0.0, 1.0).numpy().astype(np.float32)
                results.append(Prediction(full, full > self.threshold, float(scores[i])))
        return results

    def predict_one(self, image: ImageLike, text: Any = None, sentence: str | None = None) -> Prediction:
        """Segment a single image; ``text`` is (L, D) or None; ``sentence`` its report (``lvit_zones``)."""
        text = None if text is None else torch.as_tensor(text)[None]
        return self.predict([image], text, batch_size=1, sentences=None if sentence is None else [sentence])[0]


def _chunks(items: list[Any], size: int) -> Iterator[tuple[int, list[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]
