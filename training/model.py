"""BinaryNet in PyTorch for a :class:`pynq_bnn.spec.network.Network` (docs/FORMAT.md).

Training mode: straight-through estimators, float batch norm on (pooled) sums.

Eval mode is **bit-exact** with ``pynq_bnn.spec.reference``: it computes the integer sums of every
layer (exact in float32, all |sum| < 2^24), applies the folded integer thresholds of
:func:`pynq_bnn.spec.folding.fold_threshold` (pooling = max of integer sums, then the rule) and
returns the last layer's integer sums (plus the affine of :func:`pynq_bnn.spec.folding.fold_affine`
for the logits). The export (``training/export.py``) uses :meth:`BinaryNet.folded` so both see
the very same integers.

Layer 1 in training computes ``conv(x / 255, w_q * c_w)`` with ``x = 2 p - 255`` the integer input
and ``w_q`` the int8 weights (per-output-channel scale ``c_w = max|w| / 127``); its float sum is
``s_int * c`` with ``c = c_w / 255``, so its batch norm folds on the integer sum as
``fold_threshold(gamma * c, beta, mean / c, var, eps)`` (the threshold ``t`` scales by ``1 / c``).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pynq_bnn.spec.folding import fold_affine, fold_threshold
from pynq_bnn.spec.network import Network

BN_EPS = 1e-4
INPUT_SCALE = 255.0  # training input is (2p - 255) / 255


class SignSTE(torch.autograd.Function):
    """sign with sign(0) = +1; gradient of hard-tanh (pass where |x| <= 1)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def binarize(x: torch.Tensor) -> torch.Tensor:
    return SignSTE.apply(x)


def hard_sign(x: torch.Tensor) -> torch.Tensor:
    """Non-differentiable sign, sign(0) = +1."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def int8_quantize(w: torch.Tensor):
    """Per-output-channel int8 quantization: (w_q integers as float, scale c_w[Cout])."""
    scale = w.detach().abs().amax(dim=tuple(range(1, w.dim()))).clamp_min(1e-12) / 127.0
    shape = (-1,) + (1,) * (w.dim() - 1)
    wq = torch.round(w.detach() / scale.view(shape)).clamp_(-127, 127)
    return wq, scale


def images_to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC images -> integer-valued float NCHW (channels_last) x = 2p - 255."""
    x = images.permute(0, 3, 1, 2).to(torch.float32)
    return (x * 2.0 - 255.0).contiguous(memory_format=torch.channels_last)


class BinaryNet(nn.Module):
    def __init__(self, network: Network, bn_eps: float = BN_EPS, bn_momentum: float = 0.1):
        super().__init__()
        self.network = network
        self.bn_eps = float(bn_eps)
        self.layer_specs = network.layers
        self.weights = nn.ParameterDict()
        self.bns = nn.ModuleDict()
        for layer in self.layer_specs:
            if layer.kind in ("conv1", "conv"):
                w = torch.empty(layer.out_channels, layer.in_channels, 3, 3)
                nn.init.kaiming_uniform_(w, a=5 ** 0.5)
                bn = nn.BatchNorm2d(layer.out_channels, eps=bn_eps, momentum=bn_momentum)
            else:
                w = torch.empty(layer.out_channels, layer.in_channels)
                nn.init.kaiming_uniform_(w, a=5 ** 0.5)
                bn = nn.BatchNorm1d(layer.out_channels, eps=bn_eps, momentum=bn_momentum)
            if layer.kind != "conv1":
                w.clamp_(-1, 1)
            self.weights[layer.name] = nn.Parameter(w)
            self.bns[layer.name] = bn

    # ------------------------------------------------------------------ training
    def clip_latent(self) -> None:
        """Clip binary layers' latent weights to [-1, 1] (after every optimizer step)."""
        with torch.no_grad():
            for layer in self.layer_specs[1:]:
                self.weights[layer.name].clamp_(-1.0, 1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC images -> logits. Training: STE float path. Eval: exact integer path."""
        if not self.training:
            sums, k, h = self._forward_int(images)
            return sums.to(torch.float32) * k + h
        x = images_to_input(images) / INPUT_SCALE
        for layer in self.layer_specs:
            w = self.weights[layer.name]
            if layer.kind == "conv1":
                wq, scale = int8_quantize(w)
                w_fq = w + (wq * scale.view(-1, 1, 1, 1) - w).detach()
                x = F.conv2d(x, w_fq, padding=1)
            elif layer.kind == "conv":
                x = F.conv2d(x, binarize(w), padding=1)
            else:
                if x.dim() == 4:
                    x = x.permute(0, 2, 3, 1).flatten(1)
                x = F.linear(x, binarize(w))
            if layer.pool:
                x = F.max_pool2d(x, 2)
            x = self.bns[layer.name](x)
            if not layer.last:
                x = binarize(x)
        return x

    # ------------------------------------------------------------------ folding / eval
    def _bn_arrays(self, name: str):
        bn = self.bns[name]
        def f(t):
            return t.detach().cpu().to(torch.float32).numpy().astype(np.float32)
        return f(bn.weight), f(bn.bias), f(bn.running_mean), f(bn.running_var)

    @torch.no_grad()
    def folded(self) -> Dict[str, dict]:
        """Folded integer parameters per layer, in torch layouts (numpy arrays).

        conv1: ``weights`` int8 [C1, 3(rgb), 3, 3] (torch OIHW), ``thresholds``, ``directions``.
        binary convs / dense: ``weights`` int8 +1/-1 (OIHW / [Nout, Nin]), thresholds/directions.
        last: ``weights``, ``scale`` (k) and ``bias`` (h) float32.
        """
        out: Dict[str, dict] = {}
        for layer in self.layer_specs:
            w = self.weights[layer.name].detach().cpu().to(torch.float32)
            gamma, beta, mean, var = self._bn_arrays(layer.name)
            d: dict = {}
            if layer.kind == "conv1":
                wq, scale = int8_quantize(w)
                d["weights"] = wq.numpy().astype(np.int8)
                c = scale.numpy().astype(np.float64) / INPUT_SCALE  # s_float = s_int * c, c > 0
                # BN(s_int * c) >= 0  <=>  s_int >= t / c: fold with gamma * c and mean / c
                # (sigma unchanged, so t scales by exactly 1 / c).
                t, dr = fold_threshold(gamma.astype(np.float64) * c, beta,
                                       mean.astype(np.float64) / c, var, self.bn_eps,
                                       layer.fan_in)
                d["thresholds"], d["directions"] = t, dr
            else:
                d["weights"] = np.where(w.numpy() >= 0, 1, -1).astype(np.int8)
                if layer.last:
                    d["scale"], d["bias"] = fold_affine(gamma, beta, mean, var, self.bn_eps)
                else:
                    d["thresholds"], d["directions"] = fold_threshold(
                        gamma, beta, mean, var, self.bn_eps, layer.fan_in)
            out[layer.name] = d
        return out

    def _forward_int(self, images: torch.Tensor, folded: Dict[str, dict] | None = None):
        """Exact integer path: returns (int sums as float32 [N, n_classes], k, h) tensors."""
        if folded is None:
            folded = self.folded()
        dev = images.device
        x = images_to_input(images)
        for layer in self.layer_specs:
            f = folded[layer.name]
            w = torch.from_numpy(f["weights"].astype(np.float32)).to(dev)
            if layer.kind in ("conv1", "conv"):
                x = _exact_conv(x, w)
                if layer.pool:
                    x = F.max_pool2d(x, 2)
                shape = (1, -1, 1, 1)
            else:
                if x.dim() == 4:
                    x = x.permute(0, 2, 3, 1).flatten(1)
                x = _exact_linear(x, w)
                shape = (1, -1)
            if layer.last:
                k = torch.from_numpy(f["scale"]).to(dev)
                h = torch.from_numpy(f["bias"]).to(dev)
                return x, k, h
            t = torch.from_numpy(f["thresholds"].astype(np.float32)).to(dev).view(shape)
            dr = torch.from_numpy(f["directions"]).to(dev).view(shape)
            bits = torch.where(dr > 0, x >= t, x <= t)
            x = torch.where(bits, 1.0, -1.0)
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
        raise AssertionError("network has no last layer")

    @torch.no_grad()
    def int_scores(self, images, batch_size: int = 500) -> np.ndarray:
        """Integer scores int32 [N, n_classes] of uint8 NHWC images (numpy or tensor)."""
        dev = next(self.parameters()).device
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
        folded = self.folded()
        outs = []
        for i in range(0, images.shape[0], batch_size):
            s, _, _ = self._forward_int(images[i:i + batch_size].to(dev), folded)
            outs.append(s.cpu().numpy())
        if not outs:
            return np.zeros((0, self.network.n_classes), dtype=np.int32)
        s = np.concatenate(outs)
        si = np.rint(s).astype(np.int32)
        assert np.array_equal(si, s), "non-integer sum: the eval path lost exactness"
        return si

    @torch.no_grad()
    def predict(self, images, batch_size: int = 500) -> np.ndarray:
        """Class indices: argmax (first maximum) of k * sum + h, computed in float64."""
        folded = self.folded()
        last = folded[self.layer_specs[-1].name]
        s = self.int_scores(images, batch_size)
        scores = (last["scale"].astype(np.float64) * s
                  + last["bias"].astype(np.float64)).astype(np.float32)
        return np.argmax(scores, axis=1)


def _exact_conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """3x3 pad-1 conv of integer-valued float tensors, exact (no Winograd/FFT/TF32)."""
    if x.device.type == "cpu":
        return F.conv2d(x, w, padding=1)
    n, c, hgt, wid = x.shape
    cols = F.unfold(x, 3, padding=1)  # [N, C*9, H*W] in (c, ky, kx) order
    out = torch.matmul(w.reshape(w.shape[0], -1), cols)
    return out.view(n, -1, hgt, wid).contiguous(memory_format=torch.channels_last)


def _exact_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.linear(x, w)


def disable_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
