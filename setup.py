"""pynq-bnn: BinaryNet CIFAR-10 on PYNQ boards (Pynq-Z1/Z2 first), with off-board backends.

Nothing here imports pynq or reads a BOARD variable: the same wheel installs on an x86 PC
and on a PYNQ board image (which brings its own pynq).
"""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    with open(os.path.join(HERE, "pynq_bnn", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip('"')
    raise RuntimeError("no __version__")


setup(
    name="pynq-bnn",
    version=read_version(),
    description="Binarized neural network (BinaryNet CIFAR-10) accelerator for PYNQ boards",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.8",
    packages=find_packages(include=["pynq_bnn", "pynq_bnn.*"]),
    include_package_data=True,
    package_data={"pynq_bnn": ["models/*.npz", "samples/*", "notebooks/*.ipynb",
                               "overlays/*/*.bit", "overlays/*/*.hwh", "overlays/*/*.json"]},
    install_requires=["numpy>=1.21", "Pillow>=8"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6"],
        "train": ["torch>=2.0"],
        "csim": ["hls4ml==1.3.0"],
        "board": ["pynq>=2.7"],
    },
    entry_points={
        "console_scripts": ["pynq-bnn = pynq_bnn.cli:main"],
        "pynq.notebooks": ["pynq-bnn = pynq_bnn.notebooks"],
        "pynq.overlays": ["pynq-bnn = pynq_bnn.overlays"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
