"""Make a loaded network fast for inference without changing its numbers (beyond float reassociation).

The best simple fp32 CPU path measured on the target machine (docs/benchmarks.md) is BatchNorm folded
into the preceding convolution plus channels_last memory layout: ~21 fps at B=8 for the 96 model versus ~17
eager. Folding is only valid with frozen running statistics, so the result is an eval-only copy.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from models.checkpoint import resolve_device


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d/ConvTranspose2d in an nn.Sequential into that
    conv (in place); the BN slot becomes nn.Identity so module paths stay the same. Returns the fold count."""
    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module._modules.items())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if not isinstance(bn, nn.BatchNorm2d) or not isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            if bn.running_mean is None or bn.running_var is None:
                continue
            fused = fuse_conv_bn_eval(conv.eval(), bn.eval(), transpose=isinstance(conv, nn.ConvTranspose2d))
            module._modules[conv_name] = fused
            module._modules[bn_name] = nn.Identity()
            folded += 1
    return folded


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous(memory_format=torch.channels_last) if isinstance(a, torch.Tensor) and a.dim() == 4
                 else a for a in args)


def _contiguous_output(module: nn.Module, args: tuple, output):
    if isinstance(output, torch.Tensor):
        return output.contiguous()
    if isinstance(output, tuple):
        return tuple(o.contiguous() if isinstance(o, torch.Tensor) else o for o in output)
    return output


def prepare_for_inference(model: nn.Module, device: str | torch.device = "cpu", *, channels_last: bool = True,
                          fold_bn: bool = True, inplace: bool = False) -> nn.Module:
    """An eval-mode, gradient-free copy of `model` on `device`, BN-folded and channels_last by default.

    Inputs may stay ordinary NCHW tensors (a pre-hook converts 4-D inputs) and outputs come back contiguous
    NCHW, so callers do not need to know. Numbers match the eager model to ~1e-5.
    """
    prepared = model if inplace else copy.deepcopy(model)
    prepared.eval()
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(prepared)
    prepared = prepared.to(resolve_device(device))
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
        prepared.register_forward_pre_hook(_to_channels_last)
        prepared.register_forward_hook(_contiguous_output)
    prepared.prepared_for_inference = {"fold_bn": fold_bn, "channels_last": channels_last}
    return prepared
