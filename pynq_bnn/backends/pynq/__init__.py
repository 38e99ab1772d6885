"""The ``pynq`` backend (a board): the overlay and its bitstream files, the kernel's
``pynq.DefaultIP`` driver, the board lock. ``pynq`` itself is imported only inside these
modules' functions and :mod:`.ip`, so the package imports without it."""
