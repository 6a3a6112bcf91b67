"""Fold eval-mode BatchNorm into the convolution before it (Conv1d+BN1d, Conv2d+BN2d).

``y = gamma * (W x + b - mean) / sqrt(var + eps) + beta`` is again a convolution with
``W' = W * s`` and ``b' = (b - mean) * s + beta`` where ``s = gamma / sqrt(var + eps)`` per output channel.
Valid only with running statistics, i.e. for inference.
"""

from __future__ import annotations

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold ``bn`` into ``conv`` in place (``conv`` gains a bias if it had none); ``bn`` is left untouched."""
    if not isinstance(conv, _CONVS) or not isinstance(bn, _NORMS):
        raise ValueError(f"need a ConvNd and a BatchNormNd, got {type(conv).__name__}, {type(bn).__name__}")
    if conv.out_channels != bn.num_features:
        raise ValueError(f"conv has {conv.out_channels} output channels but BN has {bn.num_features} features")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
    shape = (-1,) + (1,) * (conv.weight.ndim - 1)
    conv.weight.copy_((conv.weight.double() * scale.reshape(shape)).to(conv.weight.dtype))
    new_bias = (bias * scale + shift).to(conv.weight.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias, requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every ``conv -> norm`` pair of the model in place and replace the norm with ``nn.Identity``.

    A pair is a submodule that declares ``conv_then_norm = True`` and has ``.conv`` (ConvNd) whose output goes
    straight into ``.norm`` (BatchNormNd): ConvBlock, CTBN and ViTToCNN. The model must be in eval mode.
    Returns the number of pairs folded.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs model.eval(): folding uses the running statistics")
    folded = 0
    for module in model.modules():
        if not getattr(module, "conv_then_norm", False) or isinstance(module.norm, nn.Identity):
            continue
        fold_conv_bn(module.conv, module.norm)
        module.norm = nn.Identity()
        folded += 1
    return folded
