"""The reference building blocks, with the exact submodule names their state-dict keys depend on.

`ConvBlock` -> keys `conv_block.0.*` (Conv2d), `conv_block.1.*` (BatchNorm2d), `act.weight` (PReLU only).
`TransposedConvBlock` -> same keys with a ConvTranspose2d. `NoNormConvBlock` -> `conv_block.0.*` only.
`layer_from_spec` turns one line of `models.tables` into one of these (or a bare nn.Conv2d).
"""
from __future__ import annotations

import re

import torch
from torch import nn

ACTIVATIONS = ("relu", "leaky", "prelu", "leaky0.01")


def make_activation(name: str) -> nn.Module:
    """relu -> ReLU, leaky -> LeakyReLU(0.2) (primepake conv.py), prelu -> PReLU (2021 conv2.py, 1 slope)."""
    if name == "relu":
        return nn.ReLU()
    if name == "leaky":
        return nn.LeakyReLU(0.2)
    if name == "leaky0.01":
        return nn.LeakyReLU(0.01)
    if name == "prelu":
        return nn.PReLU()
    raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


class ConvBlock(nn.Module):
    """Conv2d -> BatchNorm2d -> (+ input when residual) -> activation. The add comes after BN, before act."""

    def __init__(self, cin: int, cout: int, kernel, stride, padding, residual: bool = False, act: str = "relu"):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.act = make_activation(act)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class TransposedConvBlock(nn.Module):
    """ConvTranspose2d -> BatchNorm2d -> activation (never residual)."""

    def __init__(self, cin: int, cout: int, kernel, stride, padding, output_padding=0, act: str = "relu"):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding), nn.BatchNorm2d(cout)
        )
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


class NoNormConvBlock(nn.Module):
    """Conv2d -> LeakyReLU(0.01), no normalisation (the discriminators)."""

    def __init__(self, cin: int, cout: int, kernel, stride, padding):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding))
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


_SPEC = re.compile(
    r"^(?P<kind>[TNP]?)(?P<cin>\d+)>(?P<cout>\d+) k(?P<k>\d+(?:,\d+)?) s(?P<s>\d+(?:,\d+)?) p(?P<p>\d+(?:,\d+)?)"
    r"(?P<flags>(?: \S+)*)$"
)


def _pair(text: str) -> tuple[int, int]:
    parts = [int(v) for v in text.split(",")]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def layer_from_spec(spec: str, default_act: str) -> nn.Module:
    """Build one layer from a table line such as "T1024>512 k3 s2 p1 op1" or "64>64 k3 s1 p1 R [relu]"."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise ValueError(f"bad layer spec {spec!r}")
    kind, cin, cout = match["kind"], int(match["cin"]), int(match["cout"])
    kernel, stride, padding = _pair(match["k"]), _pair(match["s"]), _pair(match["p"])
    flags = match["flags"].split()
    act = default_act
    residual = output_padding = 0
    bias = True
    for flag in flags:
        if flag == "R":
            residual = 1
        elif flag.startswith("op"):
            output_padding = int(flag[2:])
        elif flag == "nobias":
            bias = False
        elif flag.startswith("[") and flag.endswith("]"):
            act = flag[1:-1]
        else:
            raise ValueError(f"bad flag {flag!r} in layer spec {spec!r}")
    if kind == "P":
        return nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias)
    if kind == "N":
        return NoNormConvBlock(cin, cout, kernel, stride, padding)
    if kind == "T":
        return TransposedConvBlock(cin, cout, kernel, stride, padding, output_padding, act=act)
    return ConvBlock(cin, cout, kernel, stride, padding, residual=bool(residual), act=act)


def stage_from_spec(specs: str | list[str], default_act: str) -> nn.Sequential:
    """An nn.Sequential from either a list of layer specs or one "; "-separated string."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(";") if s.strip()]
    return nn.Sequential(*[layer_from_spec(s, default_act) for s in specs])
