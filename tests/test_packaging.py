"""Packaging: what the sdist and the wheel carry, and that the wheel installs off-board.

The build goes the way a user's does: ``python setup.py sdist`` (so MANIFEST.in is exercised,
egg-info written outside the source tree; the metadata comes from pyproject.toml), then
``pip wheel --no-build-isolation`` from that sdist (PEP 517 through pyproject.toml's
setuptools backend; offline: this interpreter's setuptools, and a clean unpacked tree, so stale
``build/`` files cannot leak into the wheel). The wheel is then installed into a fresh venv
without system site packages (numpy and Pillow come from PyPI or pip's cache; that test is
skipped when neither can be reached) and ``import pynq_bnn`` and the ``pynq-bnn`` console
script run there, with no pynq installed. The build tests are skipped where this interpreter's
setuptools cannot build a wheel offline (setuptools < 70.1 without ``wheel``, e.g. tools/test.sh's
pynq venv): the main environment's run covers them.

About 20-40 s on the 2-core CI machine (up to ~60 s while a training job shares it), most
of it the venv install (numpy from PyPI or the pip cache): marked ``slow`` (the quick loop,
``-m "not slow"``, leaves it out), except the checks of the tree itself.
"""
from __future__ import annotations

import configparser
import glob
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PKG = os.path.join(REPO, "pynq_bnn")

# The Xilinx .bit header: a 9-byte field of 0x0ff0 pairs, then the 'a' (design name) key.
BIT_MAGIC = b"\x00\x09\x0f\xf0\x0f\xf0\x0f\xf0\x0f\xf0\x00\x00\x01a"
# A real bitstream for the smallest supported part (xc7z020) is about 4 MB.
MIN_BIT_BYTES = 100_000
# Part names (as in the .bit header's 'b' field, lower case) per PYNQ board folder.
BOARD_PARTS = {"Pynq-Z1": "7z020", "Pynq-Z2": "7z020", "ZCU104": "zu7ev",
               "Ultra96": "zu3eg", "KV260": "k26"}


# ----------------------------------------------------------------------------- helpers

def _run(cmd, timeout=300, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, **kw)


def _tree_files(rel_dir, pattern="*"):
    """Files (relative to the repo, '/' separated) under rel_dir matching pattern, no caches."""
    base = os.path.join(REPO, rel_dir)
    out = []
    for path in glob.glob(os.path.join(base, "**", pattern), recursive=True):
        if os.path.isfile(path) and "__pycache__" not in path and not path.endswith(".pyc"):
            out.append(os.path.relpath(path, REPO).replace(os.sep, "/"))
    return sorted(out)


def _package_modules():
    """Every .py of the pynq_bnn package tree (directories that are packages)."""
    mods = []
    for root, dirs, files in os.walk(PKG):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if "__init__.py" not in files:
            dirs[:] = []
            continue
        mods += [os.path.relpath(os.path.join(root, f), REPO).replace(os.sep, "/")
                 for f in files if f.endswith(".py")]
    return sorted(mods)


def _can_build_wheel_offline():
    """True if this interpreter's setuptools can build a wheel (bdist_wheel) without network."""
    try:
        import setuptools
    except ImportError:
        return False
    try:
        import wheel  # noqa: F401  (bdist_wheel lives here before setuptools 70.1)
        return True
    except ImportError:
        pass
    version = tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])
    return version >= (70, 1)


def read_bit_header(path):
    """Parse the header of a Xilinx .bit file: {'a': design, 'b': part, 'c': date, 'd': time}.

    Raises ValueError if the file does not start like a bitstream.
    """
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.startswith(BIT_MAGIC):
        raise ValueError(f"{path}: no Xilinx bitstream header")
    fields, pos = {}, len(BIT_MAGIC) - 1
    for key in "abcd":
        if head[pos:pos + 1] != key.encode():
            raise ValueError(f"{path}: header field {key!r} missing")
        n = int.from_bytes(head[pos + 1:pos + 3], "big")
        fields[key] = head[pos + 3:pos + 3 + n].rstrip(b"\0").decode("ascii", "replace")
        pos += 3 + n
    if head[pos:pos + 1] != b"e":
        raise ValueError(f"{path}: header field 'e' (data length) missing")
    return fields


# ----------------------------------------------------------------------------- the tree itself

def test_no_file_pretends_to_be_a_bitstream():
    """Every .bit under overlays/ and pynq_bnn/overlays/ is a real bitstream with its .hwh."""
    bits = _tree_files("overlays", "*.bit") + _tree_files("pynq_bnn/overlays", "*.bit")
    bits = [b for b in bits if not b.startswith("overlays/build/")]  # the flow's scratch space
    for rel in bits:
        path = os.path.join(REPO, rel)
        assert os.path.getsize(path) >= MIN_BIT_BYTES, f"{rel}: too small to be a bitstream"
        header = read_bit_header(path)
        assert os.path.isfile(os.path.splitext(path)[0] + ".hwh"), f"{rel}: no .hwh beside it"
        if rel.startswith("pynq_bnn/overlays/"):
            board = rel.split("/")[2]
            assert board in BOARD_PARTS, f"{rel}: unknown board folder {board!r}"
            assert BOARD_PARTS[board] in header["b"].lower(), \
                f"{rel}: built for part {header['b']!r}, not for {board}"


def test_bit_header_parser_rejects_placeholders(tmp_path):
    empty = tmp_path / "x.bit"
    empty.write_bytes(b"")
    with pytest.raises(ValueError):
        read_bit_header(str(empty))
    fake = tmp_path / "y.bit"
    body = b"".join(k + len(v).to_bytes(2, "big") + v for k, v in
                    [(b"b", b"7z020clg400\0"), (b"c", b"2026/11/26\0"), (b"d", b"01:00:00\0")])
    fake.write_bytes(BIT_MAGIC + (9).to_bytes(2, "big") + b"bnn;x=1\0\0" + body + b"e\0\0\0\4")
    assert read_bit_header(str(fake))["b"] == "7z020clg400"


def test_setup_py_does_not_import_pynq_or_read_board():
    """Install must not depend on pynq or on a BOARD variable (PYNQ_NOTES section 5)."""
    with open(os.path.join(REPO, "setup.py")) as f:
        src = f.read()
    assert not re.search(r"^\s*(import|from)\s+pynq(utils)?\b", src, re.M)
    assert not re.search(r"(environ|getenv)[^\n]*BOARD", src)
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        build_system = f.read().split("\n[build-system]\n")[1].split("\n[")[0]
    requires = re.search(r"^requires\s*=\s*\[(.*?)\]", build_system, re.M | re.S)
    assert requires and "setuptools" in requires.group(1), build_system
    assert "pynq" not in requires.group(1).lower(), "pynq must not be a build requirement"


# ----------------------------------------------------------------------------- sdist and wheel

@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """(sdist path, wheel path) built from the current tree."""
    out = tmp_path_factory.mktemp("dist")
    if not _can_build_wheel_offline():
        # e.g. tools/test.sh's pynq venv (setuptools 65, no `wheel`); the main run covers it
        pytest.skip("this interpreter's setuptools cannot build wheels offline (no bdist_wheel)")
    r = _run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(out),
              "sdist", "-d", str(out)], cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:]
    sdists = glob.glob(str(out / "*.tar.gz"))
    assert len(sdists) == 1, sdists
    r = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
              "--disable-pip-version-check", sdists[0], "-w", str(out / "wheel")], cwd=str(out))
    assert r.returncode == 0, r.stdout[-3000:]
    # pyproject.toml's build-system: no "setup.py bdist_wheel"/"setup.py install" fallback
    assert "DEPRECATION" not in r.stdout, r.stdout[-3000:]
    wheels = glob.glob(str(out / "wheel" / "*.whl"))
    assert len(wheels) == 1, wheels
    return sdists[0], wheels[0]


@pytest.fixture(scope="module")
def wheel_names(dist):
    with zipfile.ZipFile(dist[1]) as z:
        return set(z.namelist())


@pytest.fixture(scope="module")
def wheel_meta(dist):
    with zipfile.ZipFile(dist[1]) as z:
        info = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        assert len(info) == 1, "no entry_points.txt in the wheel"
        eps = configparser.ConfigParser(delimiters=("=",))
        eps.optionxform = str
        eps.read_string(z.read(info[0]).decode())
        meta = z.read(info[0].replace("entry_points.txt", "METADATA")).decode()
    return eps, meta


@pytest.mark.slow
def test_sdist_carries_the_sources(dist):
    with tarfile.open(dist[0]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    expected = ["setup.py", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE",
                "CONTRIBUTING.md", "notebooks/__init__.py"]
    expected += _package_modules()
    expected += _tree_files("notebooks", "*.ipynb")
    expected += _tree_files("pynq_bnn/samples") + _tree_files("pynq_bnn/models", "*.npz")
    expected += _tree_files("docs", "*.md") + _tree_files("tests")
    expected += [f for f in _tree_files("notebooks") if ".ipynb_checkpoints" not in f]
    for pattern in ("*.tcl", "Makefile", "*.md"):
        expected += [f for f in _tree_files("overlays", pattern)
                     if not f.startswith("overlays/build/")]
    for pattern in ("*.cpp", "*.hpp", "*.h", "run_hls.tcl", "Makefile"):
        expected += [f for f in _tree_files("hls_src", pattern) if "/build/" not in f
                     and not re.match(r"hls_src/bnn_kernel_prj[^/]*/", f)]
    missing = sorted(set(expected) - names)
    assert not missing, f"missing from the sdist (MANIFEST.in?): {missing}"
    bad = sorted(n for n in names if n.endswith((".pyc", ".so", ".o", ".pt"))
                 or "/__pycache__/" in n or n.startswith(("build/", "training/runs/")))
    assert not bad, f"build products or checkpoints in the sdist: {bad}"


@pytest.mark.slow
def test_wheel_carries_the_package_and_its_data(wheel_names):
    names = wheel_names
    missing = [m for m in _package_modules() if m not in names]
    assert not missing, f"modules missing from the wheel: {missing}"
    for rel in (_tree_files("pynq_bnn/samples") + _tree_files("pynq_bnn/models", "*.npz")
                + _tree_files("pynq_bnn/data", "*.json")
                + _tree_files("pynq_bnn/backends/sim/fixtures")):
        assert rel in names, f"{rel} missing from the wheel"
    assert "pynq_bnn/notebooks/__init__.py" in names
    for rel in _tree_files("notebooks", "*.ipynb"):
        assert "pynq_bnn/" + rel in names, f"{rel} missing from the wheel"
    assert "pynq_bnn/overlays/__init__.py" in names
    # Bitstreams: exactly the ones in the source tree, never a stale or a made-up one.
    tree_overlays = {f for f in _tree_files("pynq_bnn/overlays")
                     if f.endswith((".bit", ".hwh"))}
    wheel_overlays = {n for n in names if n.startswith("pynq_bnn/overlays/")
                      and n.endswith((".bit", ".hwh"))}
    assert wheel_overlays == tree_overlays
    tree_bits = set(_tree_files("pynq_bnn", "*.bit"))
    wheel_bits = {n for n in names if n.endswith(".bit")}
    assert wheel_bits <= tree_bits, f".bit files not in the source tree: {wheel_bits - tree_bits}"
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"pynq_bnn"}, f"unexpected top-level entries in the wheel: {top}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.slow
def test_wheel_entry_points_and_requirements(wheel_meta, wheel_names):
    eps, meta = wheel_meta
    assert eps["pynq.notebooks"]["pynq-bnn"].strip() == "pynq_bnn.notebooks"
    assert eps["pynq.overlays"]["pynq-bnn"].strip() == "pynq_bnn.overlays"
    target = eps["console_scripts"]["pynq-bnn"].strip()
    assert target == "pynq_bnn.tools.cli:main"
    assert "pynq_bnn/tools/cli.py" in wheel_names
    requires = re.findall(r"^Requires-Dist: (.*)$", meta, re.M)
    unconditional = [r for r in requires if "extra ==" not in r]
    assert not [r for r in unconditional if re.match(r"pynq\b", r)], \
        "pynq must not be an unconditional requirement (board images bring their own)"
    assert any(r.startswith("numpy") for r in unconditional)
    assert any(r.lower().startswith("pillow") for r in unconditional)
    # License-Expression (setuptools >= 77) or License (older; setup.py picks the field)
    assert re.search(r"^License(-Expression)?: BSD-3-Clause$", meta, re.M), meta[:2000]
    assert re.search(r"^Requires-Python: >=3\.8$", meta, re.M)
    assert any(n.endswith(".dist-info/LICENSE") or n.endswith(".dist-info/licenses/LICENSE")
               for n in wheel_names), "LICENSE missing from the wheel's dist-info"


# ----------------------------------------------------------------------------- fresh venv

@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory):
    """A fresh venv (no system site packages) with the wheel installed; its bin/ directory."""
    root = tmp_path_factory.mktemp("venv")
    r = _run([sys.executable, "-m", "venv", "--without-pip", str(root)])
    assert r.returncode == 0, r.stdout
    py = os.path.join(root, "bin", "python")
    pip = [sys.executable, "-m", "pip", "--python", py, "--disable-pip-version-check"]
    if _run(pip + ["--version"], timeout=60).returncode != 0:  # pip < 22.3: no --python
        r = _run([sys.executable, "-m", "venv", "--clear", str(root)], timeout=120)
        assert r.returncode == 0, r.stdout
        pip = [py, "-m", "pip", "--disable-pip-version-check"]
    r = _run(pip + ["install", "-q", "--no-compile", "--prefer-binary", dist[1]], timeout=400)
    if r.returncode != 0:
        if re.search(r"No matching distribution|Could not find a version|NewConnectionError|"
                     r"Temporary failure in name resolution|Network is unreachable", r.stdout):
            pytest.skip("numpy/Pillow not reachable from PyPI or pip's cache:\n"
                        + r.stdout[-800:])
        pytest.fail("installing the wheel into a fresh venv failed:\n" + r.stdout[-3000:])
    return os.path.join(root, "bin")


_PROBE = r"""
import json, os, sys
import pynq_bnn, pynq_bnn.notebooks, pynq_bnn.overlays
try:
    from importlib.metadata import entry_points
    eps = entry_points()
    def group(name):
        return list(eps.select(group=name)) if hasattr(eps, "select") else list(eps.get(name, []))
except ImportError:
    def group(name):
        return []
print(json.dumps({
    "file": pynq_bnn.__file__,
    "version": pynq_bnn.__version__,
    "pynq_imported": any(m == "pynq" or m.startswith("pynq.") for m in sys.modules),
    "notebooks_path": list(pynq_bnn.notebooks.__path__),
    "notebooks": sorted(os.listdir(pynq_bnn.notebooks.__path__[0])),
    "overlays_path": list(pynq_bnn.overlays.__path__),
    "eps": {g: [[e.name, e.value] for e in group(g)]
            for g in ("pynq.notebooks", "pynq.overlays", "console_scripts")},
}))
"""


@pytest.mark.slow
def test_wheel_imports_in_a_fresh_venv_without_pynq(venv, tmp_path):
    r = _run([os.path.join(venv, "python"), "-c", _PROBE], cwd=str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert not got["file"].startswith(REPO + os.sep), "imported the source tree, not the wheel"
    assert not got["pynq_imported"], "import pynq_bnn must not import pynq"
    from pynq_bnn import __version__
    assert got["version"] == __version__
    # `pynq get-notebooks` copies the folder at __path__[0] (pynqutils ExtensionsManager).
    for rel in _tree_files("notebooks", "*.ipynb"):
        assert os.path.basename(rel) in got["notebooks"]
    assert ["pynq-bnn", "pynq_bnn.notebooks"] in got["eps"]["pynq.notebooks"]
    assert ["pynq-bnn", "pynq_bnn.overlays"] in got["eps"]["pynq.overlays"]
    assert ["pynq-bnn", "pynq_bnn.tools.cli:main"] in got["eps"]["console_scripts"]


@pytest.mark.slow
def test_console_script_info_in_a_fresh_venv(venv, tmp_path):
    script = os.path.join(venv, "pynq-bnn")
    assert os.path.isfile(script), "console script pynq-bnn not installed"
    env = {k: v for k, v in os.environ.items() if k not in ("BOARD", "PYTHONPATH")}
    r = subprocess.run([script, "info", "--json"], cwd=str(tmp_path), env=env, timeout=120,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.stdout.strip(), f"no output (rc {r.returncode}):\n{r.stderr[-3000:]}"
    info = json.loads(r.stdout.strip().splitlines()[-1])
    from pynq_bnn import __version__
    assert info["version"] == __version__
    assert info.get("pynq") is None  # no pynq in this venv
    shipped_model = _tree_files("pynq_bnn/models", "*.npz")
    if shipped_model:  # the default model loads and the cpu backend opens: exit status 0
        assert r.returncode == 0, r.stderr[-3000:]
        assert info.get("checksum")
    else:
        assert r.returncode in (0, 1), r.stderr[-3000:]
    assert all(b.endswith(".bit") for b in info.get("bitstreams", []))


# ----------------------------------------------------------------------------- PYNQ delivery

@pytest.mark.needs_pynq
def test_pynq_get_notebooks_delivers_the_notebooks(tmp_path):
    """pynq's own delivery code (the body of `pynq get-notebooks`) on our notebooks folder.

    Runs where pynqutils is installed (the pynq venv of tools/test.sh); no board needed,
    device_name None means no .link/.d overlay resolution, as for a package without them.
    """
    setup_utils = pytest.importorskip("pynqutils.setup_utils")
    notebooks = _tree_files("notebooks", "*.ipynb")
    if not notebooks:
        pytest.skip("no notebooks in notebooks/ yet")
    dst = tmp_path / "pynq-notebooks"
    setup_utils.deliver_notebooks(None, os.path.join(REPO, "notebooks"), str(dst), "pynq-bnn",
                                  folder=True)
    delivered = {os.path.relpath(p, dst / "pynq-bnn")
                 for p in glob.glob(str(dst / "pynq-bnn" / "**" / "*"), recursive=True)}
    for rel in notebooks:
        assert os.path.relpath(rel, "notebooks") in delivered
    assert "__init__.py" not in delivered
