"""``python -m pynq_bnn``: the ``pynq-bnn`` command line (see :mod:`pynq_bnn.tools.cli`)."""
import sys

from .tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
