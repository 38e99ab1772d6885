"""The pynq-bnn command line: output formats, exit codes, one-line errors (in-process main()
and once as a subprocess)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import SMALL_32 as SMALL
from pynq_bnn import __version__
from pynq_bnn.errors import ParamsError
from pynq_bnn.spec import reference
from pynq_bnn.spec.params import save_params
from pynq_bnn.testing import random_images, random_params
from pynq_bnn.tools.cli import main
from pynq_bnn.tools.datasets import balanced_subset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^(?P<path>.+): (?P<label>\S+) (?P<score>-?\d+\.\d{4})$")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    params = random_params(SMALL, seed=4, images=random_images(4, 32, seed=8))
    path = str(tmp_path_factory.mktemp("model") / "small.npz")
    save_params(params, path)
    return params, path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    imgs = random_images(3, 32, seed=30)
    paths = []
    for i, a in enumerate(imgs):
        paths.append(str(d / f"img{i}.png"))
        Image.fromarray(a).save(paths[-1])
    bad = str(d / "broken.png")
    with open(bad, "w") as f:
        f.write("text, not pixels\n")
    return imgs, paths, bad


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("backend", ["cpu", "mock"])
def test_classify_prints_path_label_score(capsys, model, files, backend):
    params, mpath = model
    imgs, paths, _ = files
    code, out, err = run(capsys, "classify", "--backend", backend, "--model", mpath, *paths)
    assert code == 0 and err == ""
    ints = reference.scores(params, imgs)
    labels = reference.predict(params, ints)
    affine = reference.affine_scores(params, ints)
    lines = out.splitlines()
    assert len(lines) == 3
    for line, path, k, a in zip(lines, paths, labels, affine):
        m = LINE.match(line)
        assert m, line
        assert m["path"] == path and m["label"] == params.class_names[k]
        assert float(m["score"]) == pytest.approx(a[k], abs=1e-4)


def test_classify_json(capsys, model, files):
    params, mpath = model
    imgs, paths, _ = files
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath, "--json", *paths)
    assert code == 0
    doc = json.loads(out)
    assert doc["backend"]["name"] == "cpu" and doc["backend"]["reason"] == "backend 'cpu' requested"
    assert doc["complete"] is True and doc["failed"] == 0 and doc["model"] == mpath
    records = doc["results"]
    ints = reference.scores(params, imgs)
    assert isinstance(records, list) and len(records) == 3
    for rec, path, k, a, i in zip(records, paths, reference.predict(params, ints),
                                  reference.affine_scores(params, ints), ints):
        assert rec["ok"] is True and rec["path"] == path and rec["index"] == k
        assert rec["name"] == rec["label"] == params.class_names[k]
        assert rec["score"] == pytest.approx(a[k])
        assert rec["top"] == [{"name": params.class_names[k], "index": k,
                               "score": pytest.approx(a[k])}]
        assert rec["scores"] == pytest.approx(list(a))
        assert rec["int_scores"] == list(i)


def test_classify_bad_image_keeps_the_others(capsys, model, files, tmp_path):
    _, mpath = model
    _, paths, bad = files
    missing = str(tmp_path / "nope.jpg")
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath,
                         paths[0], bad, paths[1], missing)
    assert code == 2
    assert [LINE.match(x)["path"] for x in out.splitlines()] == [paths[0], paths[1]]
    errs = err.splitlines()
    assert len(errs) == 2 and "Traceback" not in err
    assert bad in errs[0] and "not an image" in errs[0]
    assert missing in errs[1] and "no such file" in errs[1]
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath, "--json",
                         bad, paths[0], missing)
    doc = json.loads(out)
    assert code == 2 and doc["failed"] == 2
    # every item, in input order; the failed ones with their error
    assert [(r["path"], r["ok"]) for r in doc["results"]] == [(bad, False), (paths[0], True),
                                                             (missing, False)]
    assert "not an image" in doc["results"][0]["error"] and bad in doc["results"][0]["error"]
    assert "no such file" in doc["results"][2]["error"]
    assert len(err.splitlines()) == 2 and "Traceback" not in err


def _dataset(tmp_path, params, n=20, wrong=(1, 5, 6)):
    x = random_images(n, 32, seed=77)
    pred = reference.predict(params, reference.scores(params, x))
    y = pred.copy()
    for i in wrong:
        y[i] = (y[i] + 1) % 10
    path = str(tmp_path / "data.npz")
    np.savez(path, x=x, y=y.astype(np.uint8))
    return path, x, y, pred


def test_eval_accuracy_equals_the_reference(capsys, model, tmp_path):
    params, mpath = model
    data, x, y, pred = _dataset(tmp_path, params)
    code, out, err = run(capsys, "eval", "--backend", "cpu", "--model", mpath, "--batch", "7", data)
    assert code == 0
    assert out.splitlines()[0].startswith("backend cpu [")   # what ran: the first line
    assert "accuracy: 0.8500 (17/20)" in out
    assert re.search(r"per class: \S+ \d\.\d{3}", out)
    assert re.search(r"images/s: \d+\.\d", out)
    assert err == ""  # no progress bar: stderr is not a terminal here
    code, out, err = run(capsys, "eval", "--backend", "mock", "--model", mpath, "--json",
                         "--limit", "4", "--batch", "3", data)
    assert code == 0
    rec = json.loads(out)
    assert {"accuracy", "n", "images_per_s"} <= set(rec)
    rows = balanced_subset(y, 4, seed=0)          # the seeded class-balanced subset
    assert rec["n"] == 4 and rec["accuracy"] == pytest.approx(np.mean(pred[rows] == y[rows]))
    assert rec["subset"]["of"] == 20 and rec["subset"]["seed"] == 0
    assert rec["backend"]["name"] == "mock" and rec["backend"]["kernel"]
    assert rec["images_per_s"] > 0
    conf = np.array(rec["confusion"])            # rows: true class, columns: predicted
    expected = np.zeros_like(conf)
    np.add.at(expected, (y[rows], pred[rows]), 1)
    np.testing.assert_array_equal(conf, expected)
    assert rec["class_names"] == list(params.class_names)
    for k, name in enumerate(params.class_names):
        total = int((y[rows] == k).sum())
        assert rec["per_class"][name] == (conf[k, k] / total if total else None)


@pytest.mark.parametrize("tqdm", [True, False], ids=["tqdm", "plain"])
def test_eval_progress_bar_on_a_terminal_only(capsys, model, tmp_path, monkeypatch, tqdm):
    params, mpath = model
    data, *_ = _dataset(tmp_path, params, n=6, wrong=(1,))
    if tqdm:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setattr("pynq_bnn.tools.progress.have_tqdm", lambda: False)
    monkeypatch.setattr("pynq_bnn.tools.progress._isatty", lambda stream: True)
    code, out, err = run(capsys, "eval", "--backend", "cpu", "--model", mpath, "--batch", "2", data)
    assert code == 0 and "\r" in err and "6/6" in err
    assert "\r" not in out and "6/6" not in out            # stdout: results only
    assert out.splitlines()[-3].startswith("accuracy: 0.8333 (5/6)")


@pytest.mark.parametrize("content,problem", [
    ("text", "nor an .npz"),
    ("nokey", "missing array 'y'"),
    ("float", "expected uint8"),
    ("labels", "label 10 is outside the model's 10 classes"),
    ("length", "3 images but 2 labels"),
    ("missing", "no such file"),
])
def test_eval_bad_npz_is_one_line_and_exit_2(capsys, model, tmp_path, content, problem):
    path = str(tmp_path / "d.npz")
    x = random_images(3, 32)
    if content == "text":
        with open(path, "w") as f:
            f.write("hello")
    elif content == "nokey":
        np.savez(path, x=x)
    elif content == "float":
        np.savez(path, x=x.astype(np.float32), y=np.zeros(3, np.uint8))
    elif content == "labels":
        np.savez(path, x=x, y=np.array([0, 10, 2]))
    elif content == "length":
        np.savez(path, x=x, y=np.zeros(2, np.uint8))
    code, out, err = run(capsys, "eval", "--backend", "cpu", "--model", model[1], path)
    assert code == 2 and out == ""
    line = one_line(err)
    assert path in line and re.search(problem, line), line


@pytest.mark.slow
def test_bench_json(capsys, model):
    code, out, err = run(capsys, "bench", "--backend", "cpu", "--model", model[1], "--batch", "4",
                         "--runs", "2", "--json")
    assert code == 0
    rec = json.loads(out)
    assert {"backend", "batch", "runs", "images_per_s", "timings"} <= set(rec)
    assert set(rec["timings"]) >= {"preprocess", "layer1", "transfer", "kernel", "post", "total"}
    assert rec["batch"] == 4 and rec["runs"] == 2 and rec["images_per_s"] > 0
    code, out, err = run(capsys, "bench", "--backend", "cpu", "--model", model[1], "--batch", "3",
                         "--runs", "1")
    assert code == 0 and "images/s" in out and "kernel" in out


def test_info_json(capsys, model):
    code, out, err = run(capsys, "info", "--json", "--backend", "cpu", "--model", model[1])
    assert code == 0, err
    rec = json.loads(out)
    assert {"version", "backend", "board", "bitstream", "bitstream_found", "model",
            "checksum"} <= set(rec)
    assert rec["version"] == __version__ and rec["model"] == model[1]
    assert rec["checksum"] == model[0].checksum and rec["backend"] == "cpu"
    assert rec["model_test_acc"] == model[0].training.get("test_acc")
    code, out, err = run(capsys, "info", "--backend", "cpu", "--model", model[1])
    assert code == 0 and "checksum:" in out


def test_info_with_a_bad_model_still_reports(capsys, tmp_path):
    bad = str(tmp_path / "bad.npz")
    with open(bad, "wb") as f:
        f.write(b"garbage")
    code, out, err = run(capsys, "info", "--json", "--backend", "cpu", "--model", bad)
    assert code == 1
    rec = json.loads(out)
    assert rec["checksum"] is None and bad in rec["model_error"]
    assert bad in one_line(err)


@pytest.mark.parametrize("command", [["classify", "x.png"], ["eval", "d.npz"], ["bench"]])
def test_bad_model_file_exit_1_one_line(capsys, tmp_path, command):
    bad = str(tmp_path / "model.npz")
    with open(bad, "wb") as f:
        f.write(b"PK\x03\x04 truncated zip")
    code, out, err = run(capsys, command[0], "--backend", "cpu", "--model", bad, *command[1:])
    assert code == 1 and out == ""
    line = one_line(err)
    assert line.startswith("pynq-bnn: error:") and bad in line


def test_debug_shows_the_exception(tmp_path):
    bad = str(tmp_path / "model.npz")
    with open(bad, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(ParamsError):
        main(["classify", "--debug", "--backend", "cpu", "--model", bad, "x.png"])
    with pytest.raises(ParamsError):
        main(["--debug", "classify", "--backend", "cpu", "--model", bad, "x.png"])


def test_verbose_logs_to_stderr(capsys, model, files):
    code, out, err = run(capsys, "-v", "classify", "--backend", "cpu", "--model", model[1],
                         files[1][0])
    assert code == 0 and len(out.splitlines()) == 1
    assert "INFO" in err and "backend cpu" in err
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", model[1], files[1][0])
    assert code == 0 and err == ""


def test_main_leaves_logging_as_it_was(capsys, model, files):
    import logging
    pkg = logging.getLogger("pynq_bnn")
    before = (list(pkg.handlers), pkg.level, pkg.propagate)
    run(capsys, "--debug", "classify", "--backend", "cpu", "--model", model[1], files[1][0])
    run(capsys, "classify", "--backend", "cpu", "--model", "/nonexistent.npz", files[1][0])
    assert (list(pkg.handlers), pkg.level, pkg.propagate) == before


def test_many_files_are_classified_in_chunks(capsys, model, files, monkeypatch):
    import pynq_bnn.host.classifier as c
    monkeypatch.setattr(c, "DEFAULT_CHUNK", 2)
    imgs, paths, bad = files
    argv = paths + [bad] + paths
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", model[1], *argv)
    assert code == 2 and len(out.splitlines()) == 6 and bad in one_line(err)
    assert [LINE.match(x)["path"] for x in out.splitlines()] == paths + paths


def test_unavailable_backend_exit_1_one_line(capsys, model, files):
    code, out, err = run(capsys, "classify", "--backend", "pynq", "--model", model[1], files[1][0])
    assert code == 1 and out == ""
    assert one_line(err).startswith("pynq-bnn: error:")


def test_hardware_timeout_exit_1_one_line(capsys, model, files, monkeypatch):
    import pynq_bnn.tools.cli as cli
    monkeypatch.setattr(cli, "_backend_options",
                        lambda args: {"faults": {"never_done": True}, "timeout": 0.2})
    code, out, err = run(capsys, "classify", "--backend", "mock", "--model", model[1], *files[1])
    assert code == 1 and out == "" and "Traceback" not in err
    # exactly one error line; the driver may add a WARNING record while it cleans up
    errors = [x for x in err.splitlines() if x.startswith("pynq-bnn: error:")]
    assert len(errors) == 1 and "did not finish" in errors[0]
    assert all(x.startswith(("pynq-bnn: error:", "pynq-bnn: WARNING:")) for x in err.splitlines())


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["classify"], ["eval", "--batch", "0", "d.npz"], ["frobnicate"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_subprocess(model, files):
    _, mpath = model
    _, paths, bad = files
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "pynq_bnn.tools.cli", "classify", "--backend",
                           "cpu", "--model", mpath, paths[0], bad, paths[2]],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    assert [LINE.match(x)["path"] for x in proc.stdout.splitlines()] == [paths[0], paths[2]]
    assert bad in one_line(proc.stderr)
    proc = subprocess.run([sys.executable, "-m", "pynq_bnn", "info", "--json", "--backend", "cpu",
                           "--model", mpath], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == mpath


# ----------------------------------------------------------------------------- issue 18 / 17.5

def test_classify_directories_sorted_and_recursive(capsys, model, files, tmp_path):
    params, mpath = model
    imgs, paths, _ = files
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(imgs[0]).save(d / "b.png")
    Image.fromarray(imgs[1]).save(d / "a.PNG")                 # extensions in any case
    Image.fromarray(imgs[2]).save(d / "sub" / "c.png")
    (d / "notes.txt").write_text("not an image, and not named like one: skipped")
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath, str(d),
                         paths[2])
    assert code == 0 and err == ""
    got = [LINE.match(x)["path"] for x in out.splitlines()]
    assert got == [str(d / "a.PNG"), str(d / "b.png"), paths[2]]   # sorted, then the file
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath, "-r", str(d))
    assert code == 0
    got = [LINE.match(x)["path"] for x in out.splitlines()]
    assert got == [str(d / "a.PNG"), str(d / "b.png"), str(d / "sub" / "c.png")]
    ints = reference.scores(params, imgs[[1, 0, 2]])
    names = [params.class_names[k] for k in reference.predict(params, ints)]
    assert [LINE.match(x)["label"] for x in out.splitlines()] == names
    # a directory with no image in it is one failed item, not silence
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath, str(empty),
                         paths[0])
    assert code == 2 and len(out.splitlines()) == 1
    assert str(empty) in one_line(err) and "without image files" in err


def test_classify_top_k(capsys, model, files):
    params, mpath = model
    imgs, paths, _ = files
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath, "--top-k", "3",
                         *paths)
    assert code == 0
    affine = reference.affine_scores(params, reference.scores(params, imgs))
    for line, path, a in zip(out.splitlines(), paths, affine):
        best = sorted(range(10), key=lambda k: (-a[k], k))[:3]
        expected = ", ".join(f"{params.class_names[k]} {a[k]:.4f}" for k in best)
        assert line == f"{path}: {expected}"
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath, "--top-k", "20",
                         "--json", paths[0])
    rec = json.loads(out)["results"][0]
    assert [t["index"] for t in rec["top"]] == sorted(range(10), key=lambda k: (-affine[0][k], k))
    assert rec["top"][0]["index"] == rec["index"]
    with pytest.raises(SystemExit):
        main(["classify", "--top-k", "0", paths[0]])
    capsys.readouterr()


def test_escape_makes_one_printable_line():
    from pynq_bnn.tools.cli import escape
    assert escape("plain/path é 猫.png") == "plain/path é 猫.png"   # printable: unchanged
    assert escape("a\nb") == "a\\nb" and escape("x\ry\tz") == "x\\ry\\tz"
    assert escape("\x1b[2Jred") == "\\x1b[2Jred" and escape("a\u2028b") == "a\\u2028b"
    assert escape("back\\slash") == "back\\\\slash"
    assert escape(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png"
    for text in ("a\nb", "\x1b]0;title\x07", "\x85next", "\u202ertl"):
        assert "\n" not in escape(text) and escape(text).isprintable()


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses non-UTF-8 file names")
def test_classify_odd_file_names_one_escaped_line_each(capsys, model, files, tmp_path):
    params, mpath = model
    imgs, paths, _ = files
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9\xff.png"           # not UTF-8
    with open(raw, "wb") as f:
        Image.fromarray(imgs[0]).save(f, format="PNG")
    newline = str(tmp_path / "two\nlines\x1b[31m.png")
    Image.fromarray(imgs[1]).save(newline)
    argv = [os.fsdecode(raw), newline, paths[2]]                     # as sys.argv has them
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath, *argv)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 3                                           # one line per image
    assert lines[0].startswith(str(tmp_path) + "/caf\\xe9\\xff.png: ")
    assert lines[1].startswith(str(tmp_path) + "/two\\nlines\\x1b[31m.png: ")
    assert "\x1b" not in out
    labels = reference.predict(params, reference.scores(params, imgs))
    assert [LINE.match(x)["label"] for x in lines] == [params.class_names[k] for k in labels]
    # --json: the exact names (the undecodable bytes come back through os.fsencode)
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath, "--json", *argv)
    recs = json.loads(out)["results"]
    assert os.fsencode(recs[0]["path"]) == raw and recs[1]["path"] == newline
    # an undecodable name that fails is one escaped stderr line too
    missing = os.fsdecode(os.fsencode(str(tmp_path)) + b"/gone\xfe\n.png")
    code, out, err = run(capsys, "classify", "--backend", "cpu", "--model", mpath, missing)
    assert code == 2 and "gone\\xfe\\n.png" in one_line(err)


def test_auto_says_on_stderr_that_it_is_not_the_fpga(capsys, model, files, monkeypatch):
    import pynq_bnn.backends as backends
    monkeypatch.setattr(backends, "board_status", lambda *a: (False, "pynq is not installed"))
    _, mpath = model
    code, out, err = run(capsys, "classify", "--model", mpath, files[1][0])
    assert code == 0 and len(out.splitlines()) == 1
    line = one_line(err)
    assert line.startswith("pynq-bnn: not running on the FPGA: backend cpu [")
    assert line.endswith("because pynq is not installed")
    code, out, err = run(capsys, "classify", "--model", mpath, "--json", files[1][0])
    backend = json.loads(out)["backend"]
    assert backend["name"] == "cpu" and backend["reason"] == "auto: pynq is not installed"
    assert "not running on the FPGA" in one_line(err)


def test_every_command_says_when_the_native_engine_is_missing(capsys, model, files, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("PYNQ_BNN_NATIVE", "0")
    params, mpath = model
    data, *_ = _dataset(tmp_path, params, n=4, wrong=())
    for argv in (["classify", files[1][0]], ["eval", data], ["classify", files[1][1]]):
        code, out, err = run(capsys, argv[0], "--backend", "cpu", "--model", mpath, *argv[1:])
        assert code == 0
        line = one_line(err)
        assert "native CPU engine is not available (disabled by PYNQ_BNN_NATIVE" in line
    assert LINE.match(out.splitlines()[0])                  # and the results are still there
    code, out, err = run(capsys, "info", "--backend", "cpu", "--model", mpath, "--json")
    rec = json.loads(out)
    assert rec["engine"]["native"] is False and "PYNQ_BNN_NATIVE" in rec["engine"]["reason"]
    assert rec["backend_info"]["kernel"] == "numpy reference"


def test_eval_reads_the_official_binary_archive(capsys, model, tmp_path):
    """cifar-10-binary.tar.gz as distributed (other members around the test batch), its
    extracted folder and the test_batch.bin itself give the same accuracy as the npz."""
    import io
    import tarfile
    params, mpath = model
    data, x, y, pred = _dataset(tmp_path, params, n=30, wrong=(2, 3))
    rec = np.concatenate([y.astype(np.uint8)[:, None],
                          x.transpose(0, 3, 1, 2).reshape(30, -1)], axis=1).tobytes()
    names = "\n".join(params.class_names).encode() + b"\n\n"
    tarball = str(tmp_path / "cifar-10-binary.tar.gz")
    with tarfile.open(tarball, "w:gz") as tar:
        for name, blob in [("data_batch_1.bin", bytes(3073 * 3)), ("batches.meta.txt", names),
                           ("test_batch.bin", rec), ("readme.html", b"<html></html>")]:
            info = tarfile.TarInfo("cifar-10-batches-bin/" + name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(rec)
    (folder / "batches.meta.txt").write_bytes(names)
    results = []
    for path in (data, tarball, str(folder), str(folder / "test_batch.bin")):
        code, out, err = run(capsys, "eval", "--backend", "cpu", "--model", mpath, "--json",
                             "--limit", "12", path)
        assert code == 0, err
        r = json.loads(out)
        results.append((r["n"], r["correct"], r["confusion"]))
        assert r["data"] == path
    assert results == [results[0]] * 4
    rows = balanced_subset(y, 12)
    assert results[0][1] == int((pred[rows] == y[rows]).sum())


def test_eval_refuses_the_pickled_python_version(capsys, model, tmp_path):
    import io
    import pickle
    import tarfile
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    blob = pickle.dumps(Evil())
    tarball = str(tmp_path / "cifar-10-python.tar.gz")
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    code, out, err = run(capsys, "eval", "--backend", "cpu", "--model", model[1], tarball)
    assert code == 2 and out == "" and "never unpickles" in one_line(err)
    assert not marker.exists()


def test_info_reports_engine_mock_kernel_and_bitstream(capsys, model):
    code, out, err = run(capsys, "info", "--backend", "cpu", "--model", model[1], "--json")
    rec = json.loads(out)
    from pynq_bnn.backends.cpu import engine
    assert rec["engine"]["native"] == engine.native_available()
    assert rec["engine"]["isa"] and (rec["engine"]["native"] or rec["engine"]["reason"])
    assert rec["mock_kernel"]["kernel"] in ("hls-lib", "native engine", "numpy reference")
    assert rec["mock_kernel"]["reason"]
    assert rec["bitstream_found"] is False and rec["backend_reason"] == "backend 'cpu' requested"
    code, out, err = run(capsys, "info", "--backend", "cpu", "--model", model[1])
    assert re.search(r"^engine: +(native.*\S|numpy fallback \(.+\))$", out, re.M)
    assert re.search(r"^mock_kernel: +\S+", out, re.M) and "bitstream_found:" in out


def _throughput_rows(out):
    lines = out.splitlines()
    start = lines.index("throughput, images/s (one figure per configuration):")
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        rows.append(line)
    return rows


def test_bench_names_stages_for_the_cpu_backend(capsys, model):
    code, out, err = run(capsys, "bench", "--backend", "cpu", "--model", model[1], "--batch", "3",
                         "--runs", "1")
    assert code == 0
    assert out.splitlines()[0].startswith("backend cpu [")
    assert "ARM" not in out and "FPGA" not in out.replace("not running on the FPGA", "")
    assert "layers 2..L (" in out and "transfer" not in out.split("throughput")[0]
    rows = _throughput_rows(out)
    configs = [re.split(r"\s{2,}", r.strip())[0] for r in rows]
    assert len(configs) == 3 and len(set(configs)) == 3          # one figure per configuration
    assert all("measured" in r for r in rows)
    est = out[out.index("HLS kernel cycle ESTIMATE"):]            # a block of its own, at the end
    assert "not measured" in est.splitlines()[0]


@pytest.mark.slow
def test_bench_mock_models_the_kernel_from_the_estimate(capsys, model):
    code, out, err = run(capsys, "bench", "--backend", "mock", "--model", model[1], "--batch", "2",
                         "--runs", "1", "--json")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["backend"]["name"] == "mock" and "simulation" in rec["backend"]["note"]
    kinds = [t["kind"] for t in rec["throughput"]]
    assert "SIMULATION speed" in kinds[0]
    est = rec["performance"]["hls_cycle_estimate"]
    if est is None:
        assert len(kinds) == 1 and rec["performance"]["pipeline"] is None
        return
    assert all("MODELLED from the HLS estimate" in k for k in kinds[1:]) and len(kinds) == 3
    sim = rec["performance"]["pipeline"]["simulated_kernel"]
    # the model goes through the estimate's own batch-1 and batch-16 points
    b1 = est["batch1_ms_per_image"] / 1e3
    assert sim["per_start_s"] + sim["per_image_s"] == pytest.approx(b1, rel=1e-9)
    b16 = est["batch16_ms_per_image"] * 16 / 1e3
    assert sim["per_start_s"] + 16 * sim["per_image_s"] == pytest.approx(b16, rel=1e-9)
