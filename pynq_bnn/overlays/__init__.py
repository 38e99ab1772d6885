"""Built pynq-bnn overlays, one folder per board: ``<Board>/bnn.bit`` + ``<Board>/bnn.hwh``.

``<Board>`` is the board name PYNQ uses (``Pynq-Z2``, ``Pynq-Z1``, ``ZCU104``, ``Ultra96`` for
the Ultra96-V2, ``KV260``). Nothing is shipped here until a bitstream has really been built
with the Vivado flow in the repository's ``overlays/`` folder (``make -C overlays pynq-z2``);
that flow copies its results into this folder, so the next ``pip install .`` carries them.

This package is registered under the ``pynq.overlays`` entry point (setup.py), which is how PYNQ
tools discover overlay folders of installed packages. Note that ``pynq.Overlay("bnn.bit")`` on
its own looks only for ``<this folder>/bnn.bit`` or ``<this folder>/bnn/bnn.bit``, not in the
per-board folders: use :func:`pynq_bnn.backends.pynq.overlay_files.find_overlay` (what the
``pynq`` backend does) or give the full path. See README.md in this folder.

This module imports nothing but os: it must stay importable without pynq.
"""
import os

#: The folder that holds the per-board overlay folders.
OVERLAYS_DIR = os.path.dirname(os.path.abspath(__file__))
