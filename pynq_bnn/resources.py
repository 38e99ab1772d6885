"""Where the package's own files are: one place for every path the modules share.

``SOURCE_TREE`` is the repository checkout the package sits in (it holds ``hls_src/``); in an
installed wheel it points at site-packages, where no ``hls_src/`` exists, and the callers that
look there (the HLS C-simulation library, fresh cycle estimates) fall back accordingly.
"""
import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
MODELS_DIR = os.path.join(PACKAGE_DIR, "models")
SAMPLES_DIR = os.path.join(PACKAGE_DIR, "samples")
OVERLAY_DIR = os.path.join(PACKAGE_DIR, "overlays")
DATA_DIR = os.path.join(PACKAGE_DIR, "data")
SOURCE_TREE = os.path.dirname(PACKAGE_DIR)
HLS_SRC_DIR = os.path.join(SOURCE_TREE, "hls_src")
