"""The native CPU engine's C source and build hook (loaded with ctypes by pynq_bnn.engine)."""
