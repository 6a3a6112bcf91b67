"""Parameter and multiply-add (MAC) counting.

Parameters: ``count_parameters(model)`` is ``sum(p.numel())`` over ``model.parameters()`` (every parameter the
network has: we build only modules that run). ``convention="paper"`` counts only parameters owned by leaf
layers (Conv / Linear / Norm), which leaves out parameters held directly by composite modules - in LViT the
four learnable position embeddings (188,160 values). That is what layer-hook counters such as thop report,
and it reproduces the paper's Table I/IV sizes (LViT-T 29,719,873 ~ 29.7M, while all parameters are
29,908,033, +0.7%); we infer the paper counted this way, it does not say.

MACs: ``count_macs`` runs one forward pass with hooks and adds, per image, the multiply-adds of
convolutions (incl. transposed and 1d), linear layers and the two attention matmuls (q k^T and attn v).
Normalisation, activations, pooling, interpolation, softmax and element-wise adds are not counted (they are
<0.5% of the total). The paper's "GFLOPs" column is about this count for a batch of 2 (54.1 for LViT-T; its
per-layer increments suggest it left out the attention matmuls, 0.15 G per transformer layer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from ml.config import LViTConfig
from ml.models.lvit import Attention


def count_parameters(model: nn.Module, convention: Literal["all", "paper"] = "all") -> int:
    """Number of parameters of ``model`` (trainable or not).

    Args:
        model: any module.
        convention: ``"all"`` counts every parameter; ``"paper"`` only those owned by leaf modules (see the
            module docstring), to compare with the paper's table.
    """
    if convention == "all":
        return sum(p.numel() for p in model.parameters())
    if convention == "paper":
        return sum(
            p.numel() for m in model.modules() if not any(True for _ in m.children()) for p in m.parameters(False)
        )
    raise ValueError(f"convention must be 'all' or 'paper', got {convention!r}")


def _conv_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    kernel = math.prod(module.kernel_size)
    if isinstance(module, nn.ConvTranspose2d | nn.ConvTranspose1d):
        # every input element is scattered to C_out/groups * k*k outputs
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    return output.numel() * (module.in_channels // module.groups) * kernel


def _linear_macs(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def _attention_macs(module: Attention, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    b, n, c = inputs[0].shape
    return 2 * b * n * n * c  # q k^T and attn v, summed over heads; the qkv/proj Linears are hooked separately


def example_inputs(cfg: LViTConfig, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the shapes ``cfg`` expects: ``(images,)``, ``(images, text)`` or, for ``lvit_zones``,
    ``(images, text, zones)``."""
    images = torch.zeros(batch_size, cfg.in_channels, cfg.img_size, cfg.img_size)
    if cfg.uses_zones:
        from ml.zones import ZONE_CHANNELS

        text = torch.zeros(batch_size, cfg.text_len, cfg.text_dim)
        return images, text, torch.zeros(batch_size, ZONE_CHANNELS, cfg.img_size, cfg.img_size)
    if cfg.uses_text:
        return images, torch.zeros(batch_size, cfg.text_len, cfg.text_dim)
    return (images,)


def count_macs(model: nn.Module, cfg: LViTConfig | None = None) -> int:
    """Multiply-adds for one ``cfg.img_size`` square image (and its text), measured by forward hooks.

    Runs one forward pass in eval mode under ``torch.no_grad()`` and restores the training flag.
    ``cfg`` defaults to ``model.cfg``.
    """
    cfg = cfg if cfg is not None else getattr(model, "cfg", None)
    if not isinstance(cfg, LViTConfig):
        raise ValueError("count_macs needs an LViTConfig (pass cfg, or a model with a .cfg)")
    total = 0

    def hook(fn: Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], int]) -> Callable[..., None]:
        def run(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            nonlocal total
            total += fn(module, inputs, output)

        return run

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.ConvTranspose1d | nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(hook(_conv_macs)))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(hook(_linear_macs)))
        elif isinstance(m, Attention):
            handles.append(m.register_forward_hook(hook(_attention_macs)))
    was_training = model.training
    param = next(model.parameters())
    inputs = [t.to(device=param.device, dtype=param.dtype) for t in example_inputs(cfg, batch_size=1)]
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
