"""Execute every notebook in notebooks/ off-board, as CI would: mock backend, fake camera.

Each notebook runs top to bottom in a fresh ipykernel (nbclient); a cell that raises fails the
test. The environment makes them short: the mock backend with the numpy-reference kernel
(``PYNQ_BNN_BACKEND=mock``), the shipped camera clip as the camera
(``PYNQ_BNN_CAMERA=folder:tests/data/camera_clip``), and small caps on evaluation, frames and
training steps. The committed notebooks must carry no outputs (notebooks/README.md).
"""
import glob
import json
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))
CAMERA_CLIP = os.path.join(ROOT, "tests", "data", "camera_clip")

CI_ENV = {
    "PYNQ_BNN_BACKEND": "mock",
    "PYNQ_BNN_MOCK_KERNEL": "reference",
    "PYNQ_BNN_CAMERA": f"folder:{CAMERA_CLIP}",
    "PYNQ_BNN_EVAL_LIMIT": "32",
    "PYNQ_BNN_MAX_FRAMES": "8",
    "PYNQ_BNN_TRAIN_STEPS": "2",
    "MPLBACKEND": "Agg",
    "PYNQ_BNN_THREADS": "2",
}
CELL_TIMEOUT = 600


def test_the_notebooks_are_there():
    names = [os.path.basename(p) for p in NOTEBOOKS]
    assert names == ["1_getting_started.ipynb", "2_camera.ipynb", "3_accuracy_and_speed.ipynb",
                     "4_inside_the_bnn.ipynb", "5_your_own_model.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_committed_without_outputs(path):
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"cell {i} has outputs: strip them"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_off_board(path, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("matplotlib")
    for key, value in CI_ENV.items():
        monkeypatch.setenv(key, value)
    # The kernel imports this checkout's pynq_bnn even when it is not pip-installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    # The kernel is this interpreter (so the pynq venv run tests the pynq venv): a "python3"
    # kernelspec first on JUPYTER_PATH wins over any user-level one.
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pynq-bnn test kernel", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3",
        resources={"metadata": {"path": NOTEBOOK_DIR}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{os.path.basename(path)} raised:\n{e}")
    assert nb.cells[0].outputs[0]["text"].strip() == sys.executable
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "Traceback" not in text
    # issue 18: the live loop always ends by itself and nothing is left running for the
    # cleanup cells; progress is one bar, not a line per batch
    assert "still running" not in text
    assert not re.search(r"^\s*\d+ / \d+\s*$", text, re.M), text
    assert "DeprecationWarning" not in text
