"""The kernel ABI in one place: register map, parameter memory image, buffer layouts.

This file is the one source of the contract: the HLS kernel's constants
(hls_src/include/bnn_abi.hpp) and the mock's HWH register map are generated from it by
``python3 tools/gen_abi.py``; the driver, the mock and docs/ABI.md follow it. Change it only
together with ``ABI_VERSION``, then regenerate (tests/test_abi_generated.py checks).

Kernel signature (hls_src/src/bnn_kernel.cpp)::

    void bnn_kernel(const ap_uint<64> *params,   // parameter image (this module), m_axi gmem0
                    const ap_uint<64> *input,    // packed layer-1 output, NHWC, m_axi gmem1
                    ap_int<32>        *scores,   // int32 [n_images][n_classes], m_axi gmem2
                    ap_uint<32>        n_images, // 0 = only report the ABI id
                    ap_uint<32>       *abi_id,   // s_axilite output, written every start
                    const ap_uint<64> *params2); // the same parameter image, m_axi gmem3

Version 2 added ``params2``: the driver writes the parameter buffer's address twice, and the
kernel reads half of the weights through a second AXI master on a second HP port.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import numpy as np

from ..errors import AbiError
from .network import Layer, Network

ABI_MAGIC = 0x424E  # "BN"
ABI_VERSION = 2  # 2: params2 (the parameter image through a second m_axi port)
ABI_ID = (ABI_MAGIC << 16) | ABI_VERSION
KERNEL_NAME = "bnn_kernel"
KERNEL_VLNV = "pynq-bnn:hls:bnn_kernel:1.0"

# --- s_axilite register map, as Vitis HLS lays it out for the signature above ---------------
# Rule (Vitis HLS 2020.2+, docs/ABI.md): block-protocol registers at 0x00-0x0C, then the
# arguments in signature order from 0x10; a 64-bit m_axi pointer (offset=slave) takes two data
# words + one reserved word, a 32-bit scalar a data word + a reserved word, an output scalar a
# data word + a control word (bit 0 ap_vld). Checked by reasoning, not by a Vitis run here:
# the driver compares these offsets with the .hwh on the board.
#
# REGISTERS is the one source: the offsets below, hls_src/include/bnn_abi.hpp and the mock's
# HWH fixture (backends/sim/fixtures/bnn_sim_fixture.hwh) are generated from it by
# tools/gen_abi.py; tests/test_abi_generated.py fails when a generated file is stale.
#
# params2 (version 2) is the LAST argument of the signature, so by the rule above it lands
# after abi_id's control word: params2_1 0x44, params2_2 0x48 (+0x4C reserved), and every
# version-1 offset stays where it was. That keeps the driver's version probe meaningful across
# versions: a version-1 bitstream still has abi_id at 0x3C and answers the probe with its own
# id (0x424E0001), which the driver names in its refusal, instead of a register map that
# moved under it; writes to 0x44/0x48 are ignored by a version-1 IP.


class Field(NamedTuple):
    """One bit field of a register: ``name``, first bit, width, HWH access string."""

    name: str
    bit: int
    width: int
    access: str


class Register(NamedTuple):
    """One 32-bit s_axilite register: the constant's name here, its HWH name, offset, access."""

    const: str
    hwh_name: str
    offset: int
    access: str
    description: str
    fields: Tuple[Field, ...]


def _data(const: str, hwh: str, offset: int, arg: str, access: str = "write-only") -> Register:
    kind = "Data" if arg in hwh else "Control"
    return Register(const, hwh, offset, access, f"{kind} signal of {arg}",
                    (Field(arg, 0, 32, access),))


REGISTERS: Tuple[Register, ...] = (
    Register("CTRL", "CTRL", 0x00, "read-write", "Control signals", (
        # AP_DONE: clear on read
        Field("AP_START", 0, 1, "read-write"), Field("AP_DONE", 1, 1, "read-only"),
        Field("AP_IDLE", 2, 1, "read-only"), Field("AP_READY", 3, 1, "read-only"),
        Field("RESERVED_1", 4, 3, "read-only"),  # bit 4 AP_CONTINUE is unused with ap_ctrl_hs
        Field("AUTO_RESTART", 7, 1, "read-write"), Field("RESERVED_2", 8, 24, "read-only"))),
    Register("GIER", "GIER", 0x04, "read-write", "Global Interrupt Enable Register", (
        Field("Enable", 0, 1, "read-write"), Field("RESERVED", 1, 31, "read-only"))),
    Register("IP_IER", "IP_IER", 0x08, "read-write", "IP Interrupt Enable Register", (
        Field("CHAN0_INT_EN", 0, 1, "read-write"), Field("CHAN1_INT_EN", 1, 1, "read-write"),
        Field("RESERVED", 2, 30, "read-only"))),
    # toggle on write
    Register("IP_ISR", "IP_ISR", 0x0C, "read-write", "IP Interrupt Status Register", (
        Field("CHAN0_INT_ST", 0, 1, "read-write"), Field("CHAN1_INT_ST", 1, 1, "read-write"),
        Field("RESERVED", 2, 30, "read-only"))),
    _data("PARAMS_LO", "params_1", 0x10, "params"),
    _data("PARAMS_HI", "params_2", 0x14, "params"),
    _data("INPUT_LO", "input_r_1", 0x1C, "input_r"),
    _data("INPUT_HI", "input_r_2", 0x20, "input_r"),
    _data("SCORES_LO", "scores_1", 0x28, "scores"),
    _data("SCORES_HI", "scores_2", 0x2C, "scores"),
    _data("N_IMAGES", "n_images", 0x34, "n_images"),
    _data("ABI_ID_REG", "abi_id", 0x3C, "abi_id", access="read-only"),  # valid after a start
    Register("ABI_ID_CTRL", "abi_id_ctrl", 0x40, "read-only", "Control signal of abi_id", (
        Field("abi_id_ap_vld", 0, 1, "read-only"), Field("RESERVED", 1, 31, "read-only"))),
    _data("PARAMS2_LO", "params2_1", 0x44, "params2"),  # version 2: the same parameter image
    _data("PARAMS2_HI", "params2_2", 0x48, "params2"),
)
_OFFSETS = {r.const: r.offset for r in REGISTERS}
CTRL = _OFFSETS["CTRL"]
GIER = _OFFSETS["GIER"]
IP_IER = _OFFSETS["IP_IER"]
IP_ISR = _OFFSETS["IP_ISR"]
PARAMS_LO = _OFFSETS["PARAMS_LO"]
PARAMS_HI = _OFFSETS["PARAMS_HI"]
INPUT_LO = _OFFSETS["INPUT_LO"]
INPUT_HI = _OFFSETS["INPUT_HI"]
SCORES_LO = _OFFSETS["SCORES_LO"]
SCORES_HI = _OFFSETS["SCORES_HI"]
N_IMAGES = _OFFSETS["N_IMAGES"]
ABI_ID_REG = _OFFSETS["ABI_ID_REG"]
ABI_ID_CTRL = _OFFSETS["ABI_ID_CTRL"]
PARAMS2_LO = _OFFSETS["PARAMS2_LO"]
PARAMS2_HI = _OFFSETS["PARAMS2_HI"]
REGISTER_SPAN = 0x10000  # the s_axilite address range the Vivado flow assigns

AP_START = 1 << 0
AP_DONE = 1 << 1
AP_IDLE = 1 << 2
AP_READY = 1 << 3
AUTO_RESTART = 1 << 7

# Register names as they appear in the HWH (used to cross-check the offsets on the board).
HWH_REGISTER_NAMES = {r.hwh_name: r.offset for r in REGISTERS}

# --- compile-time limits of the kernel (hls_src/include/bnn_config.hpp takes them from the
# generated bnn_abi.hpp) -----------------------------------------------------------------------
MAX_LAYERS = 16
MAX_CHANNELS = 512
MAX_CONV_SIZE = 32
MAX_DENSE_IN = 8192
MAX_DENSE_OUT = 1024
MAX_CLASSES = 64

# --- parameter image layout (uint64 words) ----------------------------------------------------
HEADER_WORDS = 8             # word 0: ABI_ID | n_layers << 32; word 1: total words
DESCRIPTOR_WORDS = 8         # per binary layer
DESCRIPTOR_BASE = HEADER_WORDS
DATA_BASE = DESCRIPTOR_BASE + MAX_LAYERS * DESCRIPTOR_WORDS
ALIGN_WORDS = 8              # every block starts on a 64-byte boundary (burst friendly)

KIND_CONV = 0
KIND_DENSE = 1
KIND_MASK = 0xFF             # descriptor word D_KIND: kind in bits 0-7, flags above
FLAG_POOL = 1 << 8
FLAG_LAST = 1 << 9

# Descriptor word indices (word 7 is reserved, 0).
D_KIND, D_CIN, D_COUT, D_SIZE, D_WOFF, D_TOFF, D_WWORDS = range(7)

# Threshold entries: THRESHOLDS_PER_WORD 32-bit entries per word, the even entry in the low
# half; an entry is an int16 threshold in bits 0-15 and an int8 direction (+1/-1) in bits 16-23.
THRESHOLDS_PER_WORD = 2
THRESHOLD_ENTRY_BITS = 32
THRESHOLD_BITS = 16
DIRECTION_SHIFT = 16
DIRECTION_BITS = 8


def check_network(network: Network) -> None:
    """Raise AbiError if ``network`` exceeds the kernel's compile-time limits."""
    layers = network.binary_layers
    if len(layers) > MAX_LAYERS:
        raise AbiError(f"{len(layers)} binary layers > {MAX_LAYERS}")
    if network.image_size > MAX_CONV_SIZE:
        raise AbiError(f"image size {network.image_size} > {MAX_CONV_SIZE}")
    for layer in layers:
        if layer.kind == "conv":
            if max(layer.in_channels, layer.out_channels) > MAX_CHANNELS:
                raise AbiError(f"{layer.name}: channels > {MAX_CHANNELS}")
        else:
            if layer.in_channels > MAX_DENSE_IN:
                raise AbiError(f"{layer.name}: {layer.in_channels} inputs > {MAX_DENSE_IN}")
            if layer.out_channels > MAX_DENSE_OUT:
                raise AbiError(f"{layer.name}: {layer.out_channels} outputs > {MAX_DENSE_OUT}")
    if network.n_classes > MAX_CLASSES:
        raise AbiError(f"{network.n_classes} classes > {MAX_CLASSES}")


def _align(n: int) -> int:
    return -(-n // ALIGN_WORDS) * ALIGN_WORDS


def pack_thresholds(thresholds: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Threshold entries packed into words (layout: THRESHOLDS_PER_WORD and the constants above)."""
    t = np.asarray(thresholds, dtype=np.int64)
    limit = (1 << (THRESHOLD_BITS - 1)) - 1
    if np.any(np.abs(t) > limit):
        raise AbiError(f"threshold does not fit in {THRESHOLD_BITS} bits")
    t_mask = np.uint64((1 << THRESHOLD_BITS) - 1)
    d_mask = np.uint64((1 << DIRECTION_BITS) - 1)
    d_bits = np.asarray(directions, dtype=np.int64).astype(np.uint64) & d_mask
    entry = (t.astype(np.uint64) & t_mask) | (d_bits << np.uint64(DIRECTION_SHIFT))
    if entry.size % THRESHOLDS_PER_WORD:
        entry = np.append(entry, np.uint64(0))
    return entry[0::2] | (entry[1::2] << np.uint64(THRESHOLD_ENTRY_BITS))


def _descriptor(layer: Layer, w_off: int, t_off: int, w_words: int) -> list:
    kind = KIND_CONV if layer.kind == "conv" else KIND_DENSE
    flags = (FLAG_POOL if layer.pool else 0) | (FLAG_LAST if layer.last else 0)
    d = [0] * DESCRIPTOR_WORDS
    d[D_KIND], d[D_CIN], d[D_COUT], d[D_SIZE] = (kind | flags, layer.in_channels,
                                                 layer.out_channels, layer.in_size)
    d[D_WOFF], d[D_TOFF], d[D_WWORDS] = w_off, t_off, w_words
    return d


def build_param_image(params) -> np.ndarray:
    """The uint64 memory image the kernel reads: header, descriptor table, weights, thresholds.

    Built once per model and copied into one DMA buffer.
    """
    network = params.network
    check_network(network)
    layers = network.binary_layers
    blocks = []
    descriptors = []
    offset = DATA_BASE
    for layer in layers:
        lp = params.layers[layer.name]
        w = np.ascontiguousarray(lp.weights, dtype=np.uint64).reshape(-1)
        w_off = offset
        offset = _align(offset + w.size)
        blocks.append((w_off, w))
        t_off = 0
        if not layer.last:
            t = pack_thresholds(lp.thresholds, lp.directions)
            t_off = offset
            offset = _align(offset + t.size)
            blocks.append((t_off, t))
        descriptors.append(_descriptor(layer, w_off, t_off, w.size))
    image = np.zeros(offset, dtype=np.uint64)
    image[0] = np.uint64(ABI_ID | (len(layers) << 32))
    image[1] = np.uint64(offset)
    for i, d in enumerate(descriptors):
        base = DESCRIPTOR_BASE + i * DESCRIPTOR_WORDS
        image[base:base + DESCRIPTOR_WORDS] = np.array(d, dtype=np.uint64)
    for off, data in blocks:
        image[off:off + data.size] = data
    return image


def input_words(network: Network) -> int:
    """uint64 words of kernel input per image."""
    return network.input_words_per_image


def split64(address: int):
    """A 64-bit bus address as the (low, high) Python ints written to ``<arg>_1``/``<arg>_2``."""
    address = int(address)
    return address & 0xFFFFFFFF, (address >> 32) & 0xFFFFFFFF


# --- parsing the parameter image back (the mock kernel and tests use this) -------------------

class KernelModel:
    """What :func:`parse_param_image` reads back: a Params-like view of a parameter image.

    Has the two attributes :func:`pynq_bnn.spec.reference.binary_scores` uses, ``network`` (the
    topology reconstructed from the descriptor table) and ``layers`` (name -> LayerParams of
    the binary layers), plus ``abi_id`` (the id stamped in the image header).
    """

    def __init__(self, network: Network, layers: dict, abi_id: int):
        self.network = network
        self.layers = layers
        self.abi_id = abi_id

    def __repr__(self):
        return f"KernelModel({self.network!r}, abi_id=0x{self.abi_id:08x})"


def unpack_thresholds(words: np.ndarray, n: int):
    """Inverse of :func:`pack_thresholds`: (int32 thresholds, int8 directions) of ``n`` entries."""
    words = np.asarray(words, dtype=np.uint64)
    entries = np.empty(THRESHOLDS_PER_WORD * words.size, dtype=np.uint64)
    entries[0::2] = words & np.uint64((1 << THRESHOLD_ENTRY_BITS) - 1)
    entries[1::2] = words >> np.uint64(THRESHOLD_ENTRY_BITS)
    entries = entries[:n]
    t_bits = (entries & np.uint64((1 << THRESHOLD_BITS) - 1)).astype(np.uint16)
    thresholds = t_bits.view(np.int16).astype(np.int32)
    directions = ((entries >> np.uint64(DIRECTION_SHIFT)) & np.uint64((1 << DIRECTION_BITS) - 1)
                  ).astype(np.uint8).view(np.int8)
    return thresholds, directions


def parse_param_image(words) -> KernelModel:
    """Read a parameter image (as :func:`build_param_image` writes it) back into layers.

    This is the kernel's view of the ABI, written in Python: the simulated accelerator
    (pynq_bnn.backends.sim.kernel) executes a start by parsing the image it finds in simulated DDR
    and running the numpy reference on the result.

    Parameters
    ----------
    words : array_like of uint64
        The image, at least as long as its header's total-words field.

    Returns
    -------
    KernelModel
        ``network`` (a :class:`~pynq_bnn.spec.network.Network` equal to the one the image was built
        from), ``layers`` (LayerParams of every binary layer), ``abi_id``.

    Raises
    ------
    AbiError
        Wrong magic/ABI id, truncated image, inconsistent descriptors, blocks out of bounds,
        directions other than +1/-1.
    """
    from .network import NetworkError
    from .params import LayerParams

    w = np.asarray(words, dtype=np.uint64).reshape(-1)
    if w.size < DATA_BASE:
        raise AbiError(f"image of {w.size} words is shorter than its header and table "
                       f"({DATA_BASE})")
    header = int(w[0])
    abi_id, n_layers = header & 0xFFFFFFFF, header >> 32
    if abi_id != ABI_ID:
        raise AbiError(f"image ABI id 0x{abi_id:08x} is not 0x{ABI_ID:08x}")
    total = int(w[1])
    if not DATA_BASE <= total <= w.size:
        raise AbiError(f"image header says {total} words, {w.size} available")
    if not 1 <= n_layers <= MAX_LAYERS:
        raise AbiError(f"{n_layers} layers in the header (1..{MAX_LAYERS})")
    descs = []
    for i in range(n_layers):
        base = DESCRIPTOR_BASE + i * DESCRIPTOR_WORDS
        descs.append([int(v) for v in w[base:base + DESCRIPTOR_WORDS]])
    kinds = [d[D_KIND] & KIND_MASK for d in descs]
    n_conv = 0
    while n_conv < n_layers and kinds[n_conv] == KIND_CONV:
        n_conv += 1
    if n_conv == 0 or n_conv == n_layers or any(k != KIND_DENSE for k in kinds[n_conv:]):
        raise AbiError(f"layer kinds {kinds}: expected convs ({KIND_CONV}) then dense layers "
                       f"({KIND_DENSE})")
    for i, d in enumerate(descs):
        if bool(d[D_KIND] & FLAG_LAST) != (i == n_layers - 1):
            raise AbiError(
                f"descriptor {i}: LAST flag {'set' if d[D_KIND] & FLAG_LAST else 'missing'}")
        if kinds[i] == KIND_DENSE and d[D_KIND] & FLAG_POOL:
            raise AbiError(f"descriptor {i}: a dense layer cannot pool")
    try:
        network = Network(
            conv_channels=(descs[0][D_CIN],) + tuple(d[D_COUT] for d in descs[:n_conv]),
            pool_after=(False,) + tuple(bool(d[D_KIND] & FLAG_POOL) for d in descs[:n_conv]),
            fc_units=tuple(d[D_COUT] for d in descs[n_conv:-1]),
            n_classes=descs[-1][D_COUT],
            image_size=descs[0][D_SIZE])
    except NetworkError as e:
        raise AbiError(f"descriptor table describes no valid network: {e}") from None
    layers = {}
    for i, (layer, d) in enumerate(zip(network.binary_layers, descs)):
        shape = (layer.in_channels, layer.out_channels, layer.in_size)
        if (d[D_CIN], d[D_COUT], d[D_SIZE]) != shape:
            raise AbiError(f"descriptor {i} ({layer.name}): in/out/size {d[D_CIN:D_SIZE + 1]} "
                           f"inconsistent with the layers before it {shape}")
        w_off, t_off, w_words = d[D_WOFF], d[D_TOFF], d[D_WWORDS]
        expected = int(np.prod(layer.weight_shape))
        if w_words != expected:
            raise AbiError(f"descriptor {i} ({layer.name}): {w_words} weight words, "
                           f"expected {expected}")
        if not DATA_BASE <= w_off <= total - w_words:
            raise AbiError(f"descriptor {i} ({layer.name}): weights at {w_off} outside the image")
        lp = LayerParams(w[w_off:w_off + w_words].reshape(layer.weight_shape).copy())
        if not layer.last:
            t_words = -(-layer.out_channels // THRESHOLDS_PER_WORD)
            if not DATA_BASE <= t_off <= total - t_words:
                raise AbiError(f"descriptor {i} ({layer.name}): thresholds at {t_off} outside "
                               "the image")
            lp.thresholds, lp.directions = unpack_thresholds(w[t_off:t_off + t_words],
                                                             layer.out_channels)
            if not np.all((lp.directions == 1) | (lp.directions == -1)):
                raise AbiError(f"descriptor {i} ({layer.name}): directions other than +1/-1")
        layers[layer.name] = lp
    return KernelModel(network, layers, abi_id)
