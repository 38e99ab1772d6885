"""The ``mock`` backend: a register-level simulation of the kernel IP (:mod:`.kernel`: simulated
DDR, the IP's control registers, faults, the event log) behind the same driver as the board;
:mod:`.hardware` is the pynq-free hardware object, :mod:`.pynq_device` runs the unchanged
``pynq`` backend on a simulated ``pynq.Device``, :mod:`.hls_lib` loads the HLS C-simulation
library, and ``fixtures/`` holds the test HWH."""
