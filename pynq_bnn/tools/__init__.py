"""User-facing tools built on the public API: the ``pynq-bnn`` command line (:mod:`.cli`),
benchmarks (:mod:`.bench`) and the notebooks' shared setup (:mod:`.notebook`)."""
