import os
import sys

# tests/ helpers (textbook.py) importable as plain modules
sys.path.insert(0, os.path.dirname(__file__))

CIFAR_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cifar10")

# the repo root, so plain `pytest` (not only `python -m pytest`) imports pynq_bnn from the tree
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
