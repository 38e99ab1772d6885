"""``python -m pynq_bnn``: the ``pynq-bnn`` command line (see :mod:`pynq_bnn.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
