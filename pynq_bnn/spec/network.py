"""The BinaryNet CIFAR-10 topology as data.

One :class:`Network` describes the full model (128-128-256-256-512-512 / 1024-1024-10) and any
narrower variant whose channel counts and dense widths are multiples of 64. Everything else
(parameter file, reference, HLS descriptor table, training model) is derived from its
:attr:`Network.layers`. See docs/FORMAT.md, section 1.
"""
from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass
from typing import Tuple

from ..errors import NetworkError

WORD_BITS = 64
LAYER1_INPUT_CHANNELS = 3

# --- limits every backend enforces (docs/RELIABILITY.md, "Limits") ----------------------------
# Checked when a Network is built, so a model file is refused by load_params before anything
# is sized from it (a 10 KB file must not cost gigabytes on the CPU). The accelerated backends
# apply the kernel's own, narrower compile-time limits (spec/abi.py) on top.
MAX_IMAGE_SIZE = 256          # input side in pixels (CIFAR-10: 32)
MAX_LAYERS = 32               # convs + dense layers, conv1 and the last included (full: 9)
MAX_CHANNELS = 4096           # any conv channel count or dense width (full: 1024)
MAX_MAP_VALUES = 1 << 19      # values of one image's largest conv output, H*W*C (full: 131,072);
                              # what a backend allocates per image scales with it
MAX_WEIGHT_BITS = 1 << 27     # binary weights of all layers, 16 MiB packed (full: 14.0 M bits)
MAX_OPS_PER_IMAGE = 1 << 33   # multiply-accumulates per image (full: 0.62 G)


def _whole(value, name: str) -> int:
    """``value`` as an int, refusing what int() would silently truncate (8.9 -> 8) or parse."""
    whole = isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and float(value).is_integer())
    if isinstance(value, bool) or not whole:
        raise NetworkError(f"{name}: expected a whole number, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Layer:
    """One layer of the network.

    ``kind`` is ``"conv1"`` (the float first layer), ``"conv"`` (binary 3x3 conv) or ``"dense"``.
    ``in_size``/``out_size`` are the feature-map side before the conv and after the optional
    2x2 max-pool (1 for dense layers). ``in_channels`` of a dense layer is its input length.
    ``last`` marks the final layer, which returns raw integer sums (no threshold).
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    in_size: int
    pool: bool
    last: bool

    @property
    def out_size(self) -> int:
        return self.in_size // 2 if self.pool else self.in_size

    @property
    def fan_in(self) -> int:
        """Largest possible |sum| over the layer's inputs (the clip bound for thresholds)."""
        if self.kind == "conv1":
            return 27 * 255 * 127
        if self.kind == "conv":
            return 9 * self.in_channels
        return self.in_channels

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        """Shape of the weight array as stored (packed uint64 for binary layers)."""
        if self.kind == "conv1":
            return (self.out_channels, 3, 3, LAYER1_INPUT_CHANNELS)
        if self.kind == "conv":
            return (self.out_channels, 3, 3, self.in_channels // WORD_BITS)
        return (self.out_channels, self.in_channels // WORD_BITS)


@dataclass(frozen=True)
class Network:
    """BinaryNet topology: convs (3x3, pad 1) with optional 2x2 max-pool, then dense layers.

    Parameters
    ----------
    conv_channels : output channels of conv1..convK (multiples of 64).
    pool_after : one flag per conv: a 2x2 max-pool follows it. conv1 cannot pool (the FPGA
        reads its full-resolution output).
    fc_units : widths of the hidden dense layers (multiples of 64).
    n_classes : outputs of the last dense layer (2..64).
    image_size : input side in pixels (32 for CIFAR-10).
    """

    conv_channels: Tuple[int, ...] = (128, 128, 256, 256, 512, 512)
    pool_after: Tuple[bool, ...] = (False, True, False, True, False, True)
    fc_units: Tuple[int, ...] = (1024, 1024)
    n_classes: int = 10
    image_size: int = 32

    def __post_init__(self):
        object.__setattr__(self, "conv_channels",
                           tuple(_whole(c, "conv_channels") for c in self.conv_channels))
        object.__setattr__(self, "pool_after", tuple(bool(p) for p in self.pool_after))
        object.__setattr__(self, "fc_units", tuple(_whole(u, "fc_units") for u in self.fc_units))
        object.__setattr__(self, "n_classes", _whole(self.n_classes, "n_classes"))
        object.__setattr__(self, "image_size", _whole(self.image_size, "image_size"))
        self._validate()

    @classmethod
    def full(cls) -> "Network":
        """The full BinaryNet of Zhao et al. (FPGA'17)."""
        return cls()

    @classmethod
    def half(cls) -> "Network":
        """Half width: 64-64-128-128-256-256 / 512-512-10 (same bitstream)."""
        return cls(conv_channels=(64, 64, 128, 128, 256, 256), fc_units=(512, 512))

    @classmethod
    def from_dict(cls, d: dict) -> "Network":
        try:
            return cls(
                conv_channels=tuple(d["conv_channels"]),
                pool_after=tuple(d["pool_after"]),
                fc_units=tuple(d["fc_units"]),
                n_classes=d["n_classes"],
                image_size=d.get("image_size", 32),
            )
        except (KeyError, TypeError) as e:
            raise NetworkError(f"network description incomplete or malformed: {e!r}") from None

    def to_dict(self) -> dict:
        return {
            "conv_channels": list(self.conv_channels),
            "pool_after": list(self.pool_after),
            "fc_units": list(self.fc_units),
            "n_classes": self.n_classes,
            "image_size": self.image_size,
        }

    def _validate(self) -> None:
        if len(self.conv_channels) < 2:
            raise NetworkError("need at least two convs (conv1 on the ARM, one binary conv)")
        if len(self.pool_after) != len(self.conv_channels):
            raise NetworkError("pool_after needs one flag per conv")
        if self.pool_after[0]:
            raise NetworkError("conv1 cannot be followed by a pool")
        for c in self.conv_channels + self.fc_units:
            if c <= 0 or c % WORD_BITS:
                raise NetworkError(f"channel count {c} is not a positive multiple of 64")
        if not 2 <= self.n_classes <= 64:
            raise NetworkError(f"n_classes {self.n_classes} outside 2..64")
        size = self.image_size
        for p in self.pool_after:
            if p:
                if size % 2:
                    raise NetworkError("a pool would halve an odd feature-map side")
                size //= 2
        if size < 1:
            raise NetworkError("feature map vanishes")
        self._check_limits()

    def _check_limits(self) -> None:
        """The package-wide limits above (the structure checks have passed)."""
        if not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise NetworkError(f"image_size {self.image_size} outside 1..{MAX_IMAGE_SIZE}")
        n = len(self.conv_channels) + len(self.fc_units) + 1
        if n > MAX_LAYERS:
            raise NetworkError(f"{n} layers (conv_channels + fc_units + the last) > {MAX_LAYERS}")
        for key, values in (("conv_channels", self.conv_channels), ("fc_units", self.fc_units)):
            big = [c for c in values if c > MAX_CHANNELS]
            if big:
                raise NetworkError(f"{key}: {big[0]} channels > {MAX_CHANNELS}")
        for layer in self.layers:
            if layer.kind != "dense":
                n_values = layer.in_size * layer.in_size * layer.out_channels
                if n_values > MAX_MAP_VALUES:
                    raise NetworkError(
                        f"{layer.name}: output map {layer.in_size} x {layer.in_size} x "
                        f"{layer.out_channels} = {n_values} values per image > {MAX_MAP_VALUES}")
        if self.binary_weight_bits > MAX_WEIGHT_BITS:
            raise NetworkError(f"{self.binary_weight_bits} binary weight bits > {MAX_WEIGHT_BITS}")
        if self.ops_per_image > MAX_OPS_PER_IMAGE:
            raise NetworkError(f"{self.ops_per_image} multiply-accumulates per image > "
                               f"{MAX_OPS_PER_IMAGE}")

    @functools.cached_property   # hot: the driver and backends ask per batch; the instance
    def layers(self) -> Tuple[Layer, ...]:   # is frozen, so the tuple never goes stale
        out = []
        size = self.image_size
        cin = LAYER1_INPUT_CHANNELS
        n_dense = len(self.fc_units) + 1
        for i, (c, p) in enumerate(zip(self.conv_channels, self.pool_after)):
            kind = "conv1" if i == 0 else "conv"
            out.append(Layer(f"conv{i + 1}", kind, cin, c, size, p, False))
            cin = c
            size = size // 2 if p else size
        features = size * size * cin
        for j, units in enumerate(self.fc_units + (self.n_classes,)):
            last = j == n_dense - 1
            out.append(Layer(f"fc{j + 1}", "dense", features, units, 1, False, last))
            features = units
        return tuple(out)

    @property
    def first_layer(self) -> Layer:
        return self.layers[0]

    @property
    def binary_layers(self) -> Tuple[Layer, ...]:
        """The layers the FPGA kernel runs (all but conv1)."""
        return self.layers[1:]

    @property
    def last_layer(self) -> Layer:
        return self.layers[-1]

    @property
    def input_words_per_image(self) -> int:
        """uint64 words of the packed layer-1 output of one image (the kernel's input)."""
        l1 = self.first_layer
        return l1.out_size * l1.out_size * l1.out_channels // WORD_BITS

    @property
    def ops_per_image(self) -> int:
        """Multiply-accumulates of one image over all layers (the work limit's measure)."""
        total = 0
        for layer in self.layers:
            if layer.kind == "dense":
                total += layer.in_channels * layer.out_channels
            else:
                cin = 27 if layer.kind == "conv1" else 9 * layer.in_channels
                total += layer.in_size * layer.in_size * layer.out_channels * cin
        return total

    @property
    def binary_weight_bits(self) -> int:
        total = 0
        for layer in self.binary_layers:
            n = 1
            for d in layer.weight_shape:
                n *= d
            total += n * WORD_BITS
        return total
