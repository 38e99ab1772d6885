"""pynq-bnn: BinaryNet CIFAR-10 on PYNQ boards (Pynq-Z1/Z2 first), with off-board backends.

Nothing here imports pynq or reads a BOARD variable: the same wheel installs on an x86 PC
and on a PYNQ board image (which brings its own pynq).
"""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def load_engine_build():
    """pynq_bnn/backends/cpu/build.py, loaded by path (importing pynq_bnn needs numpy)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "pynq_bnn_engine_build", os.path.join(HERE, "pynq_bnn", "backends", "cpu", "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_engine_build = load_engine_build()


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
    # pynq_bnn.notebooks IS the top-level notebooks/ folder (package_dir below): one copy of the
    # notebooks in the source tree, inside the wheel for `pynq get-notebooks pynq-bnn`.
    packages=find_packages(include=["pynq_bnn", "pynq_bnn.*"]) + ["pynq_bnn.notebooks"],
    package_dir={"pynq_bnn.notebooks": "notebooks"},
    include_package_data=True,  # plus the files MANIFEST.in lists inside the packages
    ext_modules=_engine_build.ext_modules(),
    cmdclass={"build_ext": _engine_build.OptionalBuildExt},
    package_data={"pynq_bnn": ["models/*.npz", "samples/*", "overlays/README.md",
                               "overlays/*/*.bit", "overlays/*/*.hwh", "overlays/*/*.json"],
                  "pynq_bnn.notebooks": ["*.ipynb"]},
    install_requires=["numpy>=1.21", "Pillow>=8"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "nbclient>=0.7", "nbformat>=5",
                 "ipykernel>=6", "matplotlib>=3.5"],
        "train": ["torch>=2.0"],
        "csim": ["hls4ml==1.3.0"],
        "board": ["pynq>=2.7"],
    },
    entry_points={
        "console_scripts": ["pynq-bnn = pynq_bnn.tools.cli:main"],
        "pynq.notebooks": ["pynq-bnn = pynq_bnn.notebooks"],
        "pynq.overlays": ["pynq-bnn = pynq_bnn.overlays"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
