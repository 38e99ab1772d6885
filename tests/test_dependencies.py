"""The install requirements: numpy 2 never reaches a PYNQ board's environment (its pynq is built
against numpy 1.x), while PCs keep numpy 2 (issue 18 item 10). The markers in pyproject.toml are
evaluated with `packaging` for each platform, as pip evaluates them."""
import os
import sys

import pytest

pytest.importorskip("packaging")  # a dependency of pytest itself
from packaging.requirements import Requirement  # noqa: E402
from packaging.version import Version  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dependencies():
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        tomllib = pytest.importorskip("tomli")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return [Requirement(r) for r in tomllib.load(f)["project"]["dependencies"]]


def _env(system, machine, python="3.10"):
    return {"platform_system": system, "platform_machine": machine, "python_version": python,
            "python_full_version": python + ".0", "sys_platform": system.lower(),
            "os_name": "nt" if system == "Windows" else "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "platform_release": "", "platform_version": "", "implementation_version": python}


def numpy_specs(env):
    reqs = [r for r in _dependencies() if r.name == "numpy"]
    return [r.specifier for r in reqs if r.marker is None or r.marker.evaluate(env)]


BOARDS = [("Linux", "armv7l", "3.8"),    # Pynq-Z1/Z2, PYNQ 2.7 (Ubuntu 20.04)
          ("Linux", "armv7l", "3.10"),   # Pynq-Z2, PYNQ 3.0 (Ubuntu 22.04)
          ("Linux", "aarch64", "3.10"),  # ZCU104, KV260, Ultra96
          ("Linux", "armv8l", "3.10")]   # a 32-bit image on a 64-bit core
PCS = [("Linux", "x86_64", "3.10"), ("Linux", "x86_64", "3.13"), ("Darwin", "arm64", "3.12"),
       ("Darwin", "x86_64", "3.9"), ("Windows", "AMD64", "3.11"),
       ("Linux", "aarch64", "3.13")]     # numpy 1.x has no 3.13 release: nothing to protect


@pytest.mark.parametrize("system,machine,python", BOARDS)
def test_a_board_never_gets_numpy_2(system, machine, python):
    specs = numpy_specs(_env(system, machine, python))
    assert len(specs) == 1, specs                     # exactly one numpy requirement applies
    spec = specs[0]
    assert not spec.contains(Version("2.0.0")) and not spec.contains(Version("2.3.1"))
    assert spec.contains(Version("1.21.5")) and spec.contains(Version("1.26.4"))
    assert not spec.contains(Version("1.20.3"))


@pytest.mark.parametrize("system,machine,python", PCS)
def test_elsewhere_numpy_1_and_2_both_allowed(system, machine, python):
    specs = numpy_specs(_env(system, machine, python))
    assert len(specs) == 1, specs
    for v in ("1.21.0", "1.26.4", "2.0.0", "2.3.1"):
        assert specs[0].contains(Version(v)), (v, specs[0])


def test_the_running_interpreter_has_an_allowed_numpy():
    import numpy as np
    from packaging.markers import default_environment
    specs = numpy_specs(default_environment())
    assert len(specs) == 1 and specs[0].contains(Version(np.__version__.split("+")[0]))


def test_no_other_runtime_dependency_crept_in():
    # tqdm stays optional (pynq_bnn/tools/progress.py): a board install from a copied wheel
    # must not need an index for it
    assert sorted({r.name.lower() for r in _dependencies()}) == ["numpy", "pillow"]
