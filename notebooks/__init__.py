"""The pynq-bnn Jupyter notebooks, installed as the package ``pynq_bnn.notebooks``.

setup.py maps this folder (the repository's top-level ``notebooks/``) to the package
``pynq_bnn.notebooks`` (``package_dir``), so the notebooks live in one place in the source tree
and land inside the wheel. The ``pynq.notebooks`` entry point names this package, so on a board

    pynq get-notebooks pynq-bnn

copies everything in this folder except this ``__init__.py`` into ``./pynq-notebooks/pynq-bnn/``.
Keep this file: PYNQ finds the folder through ``pynq_bnn.notebooks.__path__``.
"""
