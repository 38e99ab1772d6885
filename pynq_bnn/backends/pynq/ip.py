"""The pynq driver class of the bnn_kernel IP. Imports pynq: import it only where pynq is used.

Importing this module registers :class:`BnnKernelIP` with pynq (``bindto`` by VLNV), so any
``pynq.Overlay`` built afterwards binds it to every ``pynq-bnn:hls:bnn_kernel:1.0`` instance.
"""
from __future__ import annotations

import pynq

from ...spec import abi


class BnnKernelIP(pynq.DefaultIP):
    """pynq driver of the pynq-bnn HLS kernel (``ap_ctrl_hs``, registers in pynq_bnn.spec.abi).

    Deliberately thin: register access comes from ``pynq.DefaultIP`` (``read``/``write``,
    ``mmio``, ``register_map``, ``interrupt`` where wired); the protocol lives in
    :class:`pynq_bnn.backends.driver.Accelerator`, which runs unchanged off-board.
    """

    bindto = [abi.KERNEL_VLNV]

    def __init__(self, description):
        super().__init__(description=description)

    @property
    def ctrl(self) -> int:
        """The CTRL register. Reading it clears AP_DONE (and AP_READY)."""
        return self.read(abi.CTRL)

    @property
    def idle(self) -> bool:
        """AP_IDLE. (Reads CTRL, so it also clears a pending AP_DONE.)"""
        return bool(self.read(abi.CTRL) & abi.AP_IDLE)
