"""The ``cpu`` backend: the native XNOR-popcount engine (``bnn_engine.c``, loaded with ctypes by
:mod:`.engine`; built by ``pip install`` through :mod:`.build`), else the numpy reference."""
