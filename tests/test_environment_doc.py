"""docs/ENVIRONMENT.md lists every PYNQ_BNN_* environment variable the tree reads, and no other.

The tree is every text file of the source checkout (package, notebooks, tools, tests, training,
benchmarks, the HLS and Vivado flows, docs), less build products, caches and venvs.
"""
import os
import re

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOC = os.path.join(REPO, "docs", "ENVIRONMENT.md")
NAME = re.compile(r"PYNQ_BNN_[A-Z0-9_]*[A-Z0-9]")
# Build products, caches, scratch space and venvs (tools/test.sh may put one at .venv-test).
PRUNE = {".git", "__pycache__", "build", "dist", ".pytest_cache", ".mypy_cache", ".ruff_cache",
         ".hypothesis", ".ipynb_checkpoints", "runs"}
BINARY = (".npz", ".npy", ".so", ".o", ".a", ".bit", ".hwh", ".png", ".jpg", ".jpeg", ".pt",
          ".pyc", ".gz", ".zip", ".whl", ".tar")


def _pruned(name):
    return (name in PRUNE or name.endswith(".egg-info") or name.startswith("bnn_kernel_prj")
            or name.startswith(("venv", ".venv")) or (name.startswith(".") and name != ".ci"))


def names_in_tree():
    """{variable name: [files that mention it]} over the checkout, docs/ENVIRONMENT.md excluded."""
    found = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not _pruned(d)]
        for f in files:
            path = os.path.join(root, f)
            if f.endswith(BINARY) or os.path.samefile(path, DOC) or os.path.islink(path):
                continue
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            except (UnicodeDecodeError, OSError):
                continue
            for name in set(NAME.findall(text)):
                found.setdefault(name, []).append(os.path.relpath(path, REPO))
    return found


def names_in_doc():
    with open(DOC, encoding="utf-8") as f:
        # one table row per variable, its name in backticks in the first column
        return set(re.findall(r"^\| `(PYNQ_BNN_[A-Z0-9_]+)` \|", f.read(), re.M))


def test_every_variable_in_the_tree_is_documented():
    tree = names_in_tree()
    assert len(tree) >= 10, f"the scan found too little: {sorted(tree)}"
    missing = {n: sorted(paths)[:3] for n, paths in tree.items() if n not in names_in_doc()}
    assert not missing, f"add these to docs/ENVIRONMENT.md (name: files reading it): {missing}"


def test_every_documented_variable_is_still_read_somewhere():
    stale = sorted(names_in_doc() - set(names_in_tree()))
    assert not stale, f"docs/ENVIRONMENT.md lists variables nothing reads any more: {stale}"


def test_the_scan_sees_the_package_and_the_notebooks():
    """The scan itself: names known to live in the engine, a notebook and a shell script."""
    tree = names_in_tree()
    assert "pynq_bnn/backends/cpu/engine.py" in tree["PYNQ_BNN_NATIVE"]
    assert any(p.endswith(".ipynb") for p in tree["PYNQ_BNN_EVAL_LIMIT"])
    assert "pynq_bnn/backends/cpu/build.py" in tree["PYNQ_BNN_NO_NATIVE"]
