"""Inference engines behind :class:`ml.predict.Predictor`: PyTorch, OpenVINO and ONNX Runtime, chosen per CPU.

An engine runs one network on a batch: ``engine(*inputs) -> float32 logits``, where ``inputs`` are the
network's forward arguments (``(images,)`` or ``(images, text)`` for the models of ``ml.models``; any module
whose inputs all have the batch on dim 0 works). Every engine starts from the fast path of
:func:`ml.predict.optimize_for_inference` (BatchNorm folded, ViT-to-CNN 1x1 convs on the token grid), which
is exact in float32.

Engines (``backend`` / ``precision``):

- ``torch`` / ``fp32``: the fast path in PyTorch, channels-last, ``torch.inference_mode`` (optionally
  ``torch.compile``). Exact (logits within ``FP32_TOLERANCE`` of eager).
- ``torch`` / ``bf16``: the same under bfloat16 autocast (CPU with AVX512-BF16 or AMX, or CUDA). Not exact.
- ``torch`` / ``int8``: dynamic int8 quantization of the ``nn.Linear`` layers (the transformer's), convs in
  float32. Not exact; CPU only.
- ``openvino`` / ``fp32`` and ``bf16``: the network converted to OpenVINO IR (dynamic batch) and compiled
  for the CPU with ``INFERENCE_PRECISION_HINT`` f32 (exact) or bf16 (AMX / AVX512-BF16; not exact).
- ``onnxruntime`` / ``fp32``: exported to ONNX (dynamic batch) and run by ONNX Runtime's CPU provider. Exact.

Converted models (OpenVINO IR, ONNX files) are written to ``cache_dir`` under a key made of the weights,
the module class, the input shapes and the library versions, so a process restart (a worker's cold start)
reads the converted file instead of converting again. (OpenVINO's own compiled-blob cache is not used: a bf16
model loaded from it gave wrong masks.)
Without a ``cache_dir`` the conversion goes to a temporary folder that is removed afterwards.

:func:`default_engine` is the choice the measurements in ``docs/results.md`` justify for the running
CPU (read from its feature flags, never assumed); :func:`cpu_features` says what the CPU has.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ml.cpu import CPUFeatures as CPUFeatures
from ml.cpu import cpu_features as cpu_features
from ml.models.fold import fold_batchnorm
from ml.models.lvit import ViTToCNN

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "openvino", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "int8")
SUPPORTED = {
    "torch": ("fp32", "bf16", "int8"),
    "openvino": ("fp32", "bf16"),
    "onnxruntime": ("fp32",),
}
# OpenVINO bf16 is selectable but never a default: with openvino 2026.4 its masks were right in some processes
# and wrong (13-23 % of pixels flipped on a trained checkpoint) when the model was loaded from the compiled-blob
# cache or compiled a second time in the same process; see docs/results.md.
FP32_TOLERANCE = 1e-3  # max |logit - eager logit| for the float32 engines (tested; measured < 1e-4)
# One conversion (TorchScript / torch.export trace) at a time per process: two traces at once (a worker's warm-up
# converting the text model while a task converts a checkpoint) made one of them fail.
CONVERSION_LOCK = threading.RLock()
CACHE_ENV = "LVIT_SERVING_CACHE"  # default cache_dir when none is given


# ------------------------------------------------------------------------------------------ CPU features


def backend_available(backend: str) -> bool:
    """Whether the library behind ``backend`` is installed (``torch`` always is)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend == "torch" or importlib.util.find_spec(backend) is not None


def default_engine(
    device: str | torch.device = "cpu", features: CPUFeatures | None = None, *, cache: bool = True
) -> tuple[str, str]:
    """(backend, precision) the benchmarks justify for ``device`` on this machine.

    CPU, with a place to keep converted models (``cache``): OpenVINO, in bfloat16 on CPUs with native bf16, AMX-BF16
    or AVX512-BF16 (measured on both kinds: masks of trained checkpoints equal eager's at Dice >= 0.995, 3.4-5.3x
    eager's speed; see ``docs/results.md``), else in float32 (exact).
    Without such a place every process would pay the conversion (15 s for a small model, minutes at 224 px on a
    busy CPU) before its first prediction, so the default is then PyTorch's exact fast path; so it is when
    OpenVINO is not installed. Other devices (CUDA): PyTorch float32.
    """
    device = torch.device(device)
    if device.type != "cpu" or not cache or not backend_available("openvino"):
        return "torch", "fp32"
    features = features or cpu_features()
    return "openvino", "bf16" if features.bf16 else "fp32"


def cache_configured(cache_dir: str | os.PathLike[str] | None) -> bool:
    """Whether converted models can be kept: an explicit ``cache_dir`` or ``$LVIT_SERVING_CACHE``."""
    return cache_dir is not None or bool(os.environ.get(CACHE_ENV))


# ------------------------------------------------------------------------------------------------ fast path


def unwrap_model(model: nn.Module) -> nn.Module:
    """The underlying module of DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def optimize_for_inference(
    model: nn.Module,
    *,
    device: str | torch.device | None = None,
    channels_last: bool = True,
    compile: bool = False,
) -> nn.Module:
    """A frozen inference copy of ``model`` (the original is untouched): eval mode, BatchNorm folded into the
    preceding convolutions, ViT-to-CNN 1x1 convs on the token grid, no gradients, channels-last weights,
    optionally ``torch.compile``d. Call it under ``torch.inference_mode()`` / ``torch.no_grad()``.

    Generic: any module works; the rewrites apply to the submodules they know (``conv_then_norm`` pairs,
    ``ViTToCNN``), so a network variant built from these blocks gets them too.
    """
    fast = copy.deepcopy(unwrap_model(model)).eval()
    if device is not None:
        fast.to(device)
    fold_batchnorm(fast)
    for module in fast.modules():
        if isinstance(module, ViTToCNN):
            module.upsample_first = False  # exact: 1x1 conv + BN + ReLU commute with nearest upsampling
    fast.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if compile:
        fast = torch.compile(fast, dynamic=False, options={"freezing": True})
    return fast


# ------------------------------------------------------------------------------------------------ engines


def _as_inputs(example: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """One tensor or a sequence of tensors -> a tuple of forward arguments."""
    return (example,) if isinstance(example, torch.Tensor) else tuple(example)


def _threads() -> int:
    return max(1, torch.get_num_threads())


class Engine:
    """Runs one network: ``engine(*inputs) -> float32 logits`` (a CPU tensor for OpenVINO / ONNX Runtime)."""

    backend: str = ""
    precision: str = "fp32"
    device: torch.device = torch.device("cpu")
    channels_last: bool = False  # whether images should arrive channels-last
    converted: bool = False  # this process converted the network (no converted file was cached)
    # a file in the kept cache that says this converted network passed verify_engine at this precision (None: no
    # kept cache); a later process that reads the same converted file in float32 skips the eager comparison
    verified_marker: Path | None = None

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "device": str(self.device)}


class TorchEngine(Engine):
    """The fast path (or the eager model with ``fast=False``) in PyTorch; see the module docstring."""

    backend = "torch"

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        fast: bool = True,
        compile: bool = False,
    ) -> None:
        if precision not in SUPPORTED["torch"]:
            raise ValueError(f"torch precision must be one of {SUPPORTED['torch']}, got {precision!r}")
        self.device = torch.device(device)
        if precision == "int8" and self.device.type != "cpu":
            raise ValueError("int8 dynamic quantization runs on the CPU only")
        if compile and not fast:
            raise ValueError("compile=True needs fast=True")
        self.precision = precision
        self.fast = fast
        self.compiled = compile
        self.channels_last = fast
        if fast:
            net = optimize_for_inference(model, device=self.device, compile=compile and precision != "int8")
            if precision == "int8":
                net = torch.ao.quantization.quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)
                if compile:
                    net = torch.compile(net, dynamic=False)
        else:
            net = unwrap_model(model).to(self.device).eval()
        self.model = net

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        with ExitStack() as stack:
            stack.enter_context(torch.inference_mode() if self.fast else torch.no_grad())
            if self.precision == "bf16":
                stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
            return self.model(*inputs).float()


def _cache_key(model: nn.Module, example: Sequence[torch.Tensor], tag: str) -> str:
    """Hash of what a converted file depends on: class, weights, per-sample input shapes, library versions."""
    h = hashlib.sha256()
    meta = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "inputs": [list(t.shape[1:]) for t in example],
        "tag": tag,
        "torch": torch.__version__,
        "config": getattr(getattr(model, "cfg", None), "to_dict", lambda: None)(),
    }
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


class _Workdir:
    """The folder converted files go to: ``cache_dir`` (kept) or a temporary folder (removed on close)."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None) -> None:
        cache_dir = cache_dir if cache_dir is not None else os.environ.get(CACHE_ENV) or None
        self.keep = cache_dir is not None
        self.path = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="lvit-serving-"))
        self.path.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


def _atomic_files(final: Sequence[Path], write: Callable[[Sequence[Path]], None]) -> None:
    """Have ``write`` produce temporary files, then rename them to ``final`` (last one last: readers check it)."""
    tmp_dir = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final[0].parent))
    try:
        tmps = [tmp_dir / p.name for p in final]
        write(tmps)
        for tmp, dest in zip(tmps, final, strict=True):
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _inference_copy(model: nn.Module) -> nn.Module:
    """The exact float32 fast path in NCHW on the CPU (what the converters trace)."""
    return optimize_for_inference(model, device="cpu", channels_last=False)


class OpenVINOEngine(Engine):
    """The network as OpenVINO IR with a dynamic batch, compiled for the CPU in f32 or bf16."""

    backend = "openvino"

    def __init__(
        self,
        model: nn.Module,
        example: torch.Tensor | Sequence[torch.Tensor],
        *,
        precision: str = "fp32",
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> None:
        import openvino as ov

        example = _as_inputs(example)
        if precision not in SUPPORTED["openvino"]:
            raise ValueError(f"openvino precision must be one of {SUPPORTED['openvino']}, got {precision!r}")
        if precision == "bf16" and not cpu_features().bf16:
            raise ValueError("bf16 needs a CPU with AVX512-BF16 or AMX (this one has neither)")
        self.precision = precision
        work = _Workdir(cache_dir)
        try:
            key = _cache_key(model, example, f"openvino-{ov.__version__}")
            xml, weights = work.path / f"{key}.xml", work.path / f"{key}.bin"
            self.converted = not xml.is_file()
            self.verified_marker = work.path / f"{key}.verified-{precision}" if work.keep else None
            if self.converted:
                net = _inference_copy(model)
                shapes = [([-1, *t.shape[1:]], ov.Type.f32) for t in example]
                with CONVERSION_LOCK, torch.no_grad():
                    ov_model = ov.convert_model(net, example_input=tuple(t.float() for t in example), input=shapes)
                _atomic_files(
                    [weights, xml],
                    lambda tmp: ov.save_model(ov_model, tmp[1], compress_to_fp16=False),
                )
            core = ov.Core()
            config = {
                "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": threads or _threads(),
                "PERFORMANCE_HINT": "LATENCY",
            }
            self.compiled = core.compile_model(core.read_model(xml, weights), "CPU", config)
            self.ir_xml: Path | None = xml if work.keep else None  # ml.lite serves a kept, verified IR
        finally:
            work.close()
        self.request = self.compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        arrays = [np.ascontiguousarray(t.detach().cpu().float().numpy()) for t in inputs]
        with self._lock:
            self.request.infer(arrays)
            out = self.request.get_output_tensor(0).data.copy()
        return torch.from_numpy(out)


class OnnxRuntimeEngine(Engine):
    """The network exported to ONNX (dynamic batch) on ONNX Runtime's CPU provider, float32."""

    backend = "onnxruntime"

    def __init__(
        self,
        model: nn.Module,
        example: torch.Tensor | Sequence[torch.Tensor],
        *,
        precision: str = "fp32",
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        example = _as_inputs(example)
        if precision not in SUPPORTED["onnxruntime"]:
            raise ValueError(f"onnxruntime precision must be one of {SUPPORTED['onnxruntime']}, got {precision!r}")
        self.precision = precision
        names = [f"input{i}" for i in range(len(example))]
        work = _Workdir(cache_dir)
        try:
            key = _cache_key(model, example, f"onnx-{ort.__version__}")
            path = work.path / f"{key}.onnx"
            self.converted = not path.is_file()
            self.verified_marker = work.path / f"{key}.verified-{precision}" if work.keep else None
            if self.converted:
                net = _inference_copy(model)
                # an example batch of 2: torch.export specialises a batch of 1 to a constant
                args = tuple(torch.cat([t.float(), t.float()]) for t in example)
                batch = torch.export.Dim("batch", min=1, max=1024)
                with CONVERSION_LOCK:
                    _atomic_files(
                        [path],
                        lambda tmp: torch.onnx.export(
                            net,
                            args,
                            str(tmp[0]),
                            input_names=names,
                            output_names=["logits"],
                            dynamic_shapes=tuple({0: batch} for _ in args),
                            dynamo=True,
                            external_data=False,
                            verbose=False,
                        ),
                    )
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or _threads()
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        finally:
            work.close()
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {
            n: np.ascontiguousarray(t.detach().cpu().float().numpy()) for n, t in zip(self.names, inputs, strict=True)
        }
        return torch.from_numpy(self.session.run(None, feed)[0])


def build_engine(
    model: nn.Module,
    example: torch.Tensor | Sequence[torch.Tensor],
    *,
    backend: str = "auto",
    precision: str = "auto",
    device: str | torch.device = "cpu",
    fast: bool = True,
    compile: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
) -> Engine:
    """An engine for ``model`` (left untouched). ``example``: one batch of its forward arguments.

    ``backend="auto"`` / ``precision="auto"`` take :func:`default_engine`'s choice (OpenVINO only when
    ``cache_dir`` or ``$LVIT_SERVING_CACHE`` gives converted models a place to stay); when that choice fails to
    convert this network (an op the converter lacks) or fails verification, ``auto`` falls back to PyTorch's
    exact fast path and logs why. Explicit choices raise instead.

    ``verify``: an OpenVINO / ONNX Runtime engine's first forward (a random input) is compared with the
    eager model's: float32 logits must agree within ``FP32_TOLERANCE``, bf16 within :func:`_bf16_ok`. A
    converter bug then fails loudly at start-up instead of changing masks silently. In float32, once per converted
    file: a kept cache records the pass (``Engine.verified_marker``), and a later start that reads the same file
    (same weights, shapes and library version: the cache key) skips the eager forward. bf16 engines are checked at
    every start (OpenVINO's bf16 compile gave wrong masks in some runs; docs/results.md).
    """
    device = torch.device(device)
    example = _as_inputs(example)
    auto = backend == "auto"
    if not fast or compile:  # eager and torch.compile are PyTorch features
        if backend not in ("auto", "torch"):
            raise ValueError(f"fast=False / compile=True run on the torch backend, not {backend!r}")
        backend = "torch"
    chosen_backend, chosen_precision = default_engine(device, cache=cache_configured(cache_dir))
    if backend == "auto":
        backend = chosen_backend
    if precision == "auto":
        precision = chosen_precision if backend == chosen_backend else "fp32"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if precision not in SUPPORTED[backend]:
        raise ValueError(f"{backend} supports precisions {SUPPORTED[backend]}, got {precision!r}")
    if backend != "torch" and device.type != "cpu":
        raise ValueError(f"the {backend} engine runs on the CPU; use backend='torch' for {device}")
    if backend == "torch":
        return TorchEngine(model, device=device, precision=precision, fast=fast, compile=compile)
    if not backend_available(backend):
        raise ValueError(f"backend {backend!r} is not installed (pip install {backend})")
    engine_cls = OpenVINOEngine if backend == "openvino" else OnnxRuntimeEngine
    try:
        engine = engine_cls(model, example, precision=precision, cache_dir=cache_dir)
        marker = engine.verified_marker if precision == "fp32" else None  # bf16 is checked at every start
        if verify and (engine.converted or marker is None or not marker.is_file()):
            verify_engine(engine, model, example)
            if marker is not None:
                marker.touch()
        return engine
    except Exception as exc:  # a converter's failure on an unusual network: keep serving, exactly
        if not auto:
            raise
        logger.warning("%s engine failed for %s (%s); using the PyTorch fast path", backend, type(model).__name__, exc)
        return TorchEngine(model, device=device, precision="fp32")


class EngineMismatchError(RuntimeError):
    """An engine's logits differ from the eager model's by more than its precision allows."""


def _bf16_ok(diff: torch.Tensor, ref: torch.Tensor) -> bool:
    """bf16 bound on the self-check (:func:`ml.lite.bf16_ok`, shared with the torch-free serving path)."""
    from ml.lite import bf16_ok

    return bf16_ok(float(diff.abs().mean()), float(ref.std()))


def verify_engine(
    engine: Engine, model: nn.Module, example: torch.Tensor | Sequence[torch.Tensor], seed: int = 0
) -> float:
    """Compare ``engine`` with the eager ``model`` on a seeded random input (batch 1); raise on a mismatch.

    Returns the largest absolute logit difference.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for i, t in enumerate(_as_inputs(example)):
        shape = (1, *t.shape[1:])
        r = torch.rand(shape, generator=generator) if i == 0 else torch.randn(shape, generator=generator)
        inputs.append(r)
    net = unwrap_model(model)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            ref = net(*(t.to(next(net.parameters()).device) for t in inputs)).float().cpu()
    finally:
        net.train(was_training)
    images = inputs[0].contiguous(memory_format=torch.channels_last) if engine.channels_last else inputs[0]
    out = engine(images, *inputs[1:]).float().cpu()
    diff = (out - ref).abs()
    ok = float(diff.max()) <= FP32_TOLERANCE if engine.precision == "fp32" else _bf16_ok(diff, ref)
    if not ok:
        raise EngineMismatchError(
            f"{engine.backend}/{engine.precision} logits differ from eager: max {float(diff.max()):.3g}, "
            f"mean {float(diff.mean()):.3g} (logit std {float(ref.std()):.3g})"
        )
    return float(diff.max())


__all__ = [
    "BACKENDS",
    "CACHE_ENV",
    "FP32_TOLERANCE",
    "PRECISIONS",
    "CPUFeatures",
    "Engine",
    "EngineMismatchError",
    "OnnxRuntimeEngine",
    "OpenVINOEngine",
    "TorchEngine",
    "backend_available",
    "build_engine",
    "cache_configured",
    "cpu_features",
    "default_engine",
    "optimize_for_inference",
    "unwrap_model",
    "verify_engine",
]
