"""Where the bitstreams are: one function, :func:`find_overlay`.

An installed overlay is ``pynq_bnn/overlays/<board>/bnn.bit`` with ``bnn.hwh`` beside it
(the Vivado flow in the repository's ``overlays/`` builds them; overlays/README.md says how).
Nothing here imports pynq unless it is asked to name the board.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Optional

from ...errors import BackendUnavailable
from ...resources import OVERLAY_DIR

logger = logging.getLogger(__name__)

BITSTREAM_NAME = "bnn.bit"

_HOW_TO = ("build one with the Vivado flow in the repository's overlays/ folder and install it "
           "(see overlays/README.md), or pass overlay=PATH/TO/bnn.bit")


def detect_board() -> Optional[str]:
    """The board name: pynq's active device name where pynq finds one, else ``$BOARD``."""
    if "pynq" in sys.modules or _pynq_importable():
        try:
            import pynq
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if pynq.Device.devices:
                    name = getattr(pynq.Device.active_device, "name", None)
                    if name:
                        return str(name)
        except Exception as e:  # no device, broken install: fall back to $BOARD
            logger.debug("no board name from pynq: %s", e)
    return os.environ.get("BOARD") or None


def _pynq_importable() -> bool:
    import importlib.util
    return importlib.util.find_spec("pynq") is not None


def installed_boards():
    """Boards with an installed bitstream under pynq_bnn/overlays/."""
    if not os.path.isdir(OVERLAY_DIR):
        return []
    return sorted(b for b in os.listdir(OVERLAY_DIR)
                  if os.path.isfile(os.path.join(OVERLAY_DIR, b, BITSTREAM_NAME)))


def find_overlay(board: Optional[str] = None) -> str:
    """Absolute path of the bitstream for ``board`` (its .hwh checked to be beside it).

    Parameters
    ----------
    board : str, optional
        Board name as PYNQ spells it (``"Pynq-Z2"``); default :func:`detect_board`.

    Raises
    ------
    BackendUnavailable
        No board name, no bitstream for the board, or a bitstream without its .hwh. The
        message says how to build or install one.
    """
    board = board or detect_board()
    if not board:
        raise BackendUnavailable("cannot tell which board this is (no pynq device, BOARD unset): "
                                 "set BOARD, or " + _HOW_TO)
    path = os.path.join(OVERLAY_DIR, board, BITSTREAM_NAME)
    if not os.path.isfile(path):
        have = installed_boards()
        raise BackendUnavailable(
            f"no bitstream for board {board!r}: expected {path}"
            + (f" (installed: {', '.join(have)})" if have else "") + "; " + _HOW_TO)
    hwh = os.path.splitext(path)[0] + ".hwh"
    if not os.path.isfile(hwh):
        raise BackendUnavailable(f"{path} has no {os.path.basename(hwh)} beside it; pynq needs "
                                 "both: reinstall the overlay")
    return path
