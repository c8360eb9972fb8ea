"""`fastfc bench`: the table, the JSON record, the checks that guard its
numbers, and the baselines it times (NumPy Adam, the reference network)
against PyTorch where that is installed. Only cheap cases run, in --quick mode."""
import io
import json
import math
import sys
import time

import numpy as np
import pytest

import fastfc
from fastfc import bench
from fastfc.cli import main
from fastfc.models import layer_plan

CHEAP = ["softmax loss 128x10", "affine_relu fwd+bwd 64x784x100"]


def run_cli(capsys, *argv):
    status = main(["bench", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_quick_run_through_the_api():
    report = bench.run(bench.select_cases(CHEAP), threads=2, quick=True, use_torch=False,
                       out=io.StringIO())
    assert report["meta"]["threads"] == 2 and report["meta"]["dtype"] == "float32"
    assert report["meta"]["torch"] is None
    affine, softmax = report["results"]  # in the order of bench.CASES
    assert (softmax["case"], softmax["shape"]) == ("softmax loss", "128x10")
    for record in (softmax, affine):
        assert record["check"] == "ok"
        assert record["rounds"] >= 3
        assert set(record["median_ms"]) == {"fastfc", "reference"}
        assert all(0 < t < 1e3 for t in record["median_ms"].values())
        assert all(record["min_ms"][s] <= record["median_ms"][s] for s in record["median_ms"])
        assert record["vs_reference"] == pytest.approx(
            record["median_ms"]["reference"] / record["median_ms"]["fastfc"])
        assert record["vs_torch"] is None
    assert "efficiency" not in softmax
    gemm = affine["efficiency"]
    assert gemm["kind"] == "gemm"
    assert gemm["fraction"] == pytest.approx(gemm["ceiling_ms"] / affine["median_ms"]["fastfc"])


def test_cli_table_and_json(capsys, tmp_path):
    path = tmp_path / "out.json"
    old_threads = fastfc.get_num_threads()
    status, out, _ = run_cli(capsys, "--quick", "--no-torch", "--threads", "1", "--dtype", "float64",
                             "--case", CHEAP[0], "--json", str(path))
    assert status == 0
    assert fastfc.get_num_threads() == old_threads  # restored after the run
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("case"))
    for title in ("shape", "fastfc ms", "ref ms", "torch ms", "vs ref", "vs torch", "efficiency"):
        assert title in lines[header]
    # softmax loss 128x10 | fastfc ms, ref ms, torch ms | vs ref, vs torch | efficiency
    row = lines[header + 2].split()
    assert row[:3] == ["softmax", "loss", "128x10"] and len(row) == 9
    assert float(row[3]) > 0 and float(row[4]) > 0 and row[5] == "-"
    assert float(row[6].rstrip("x")) == pytest.approx(float(row[4]) / float(row[3]), rel=0.02)
    assert row[7] == row[8] == "-"  # no torch, no ceiling
    report = json.loads(path.read_text())
    assert report["meta"]["threads"] == 1 and report["meta"]["dtype"] == "float64"
    [record] = report["results"]
    assert record["check"] == "ok" and math.isfinite(record["vs_reference"])


def test_list_and_unknown_case(capsys):
    status, out, _ = run_cli(capsys, "--list")
    assert status == 0
    assert len(out.splitlines()) == len(bench.CASES)
    assert "train step mlp 784-100-10 batch 64" in out and "epoch 784-100-10" in out
    status, _, err = run_cli(capsys, "--case", "no such kernel")
    assert status == 1 and "no such kernel" in err and "--list" in err


def test_plot_with_and_without_matplotlib(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    path = tmp_path / "speedups.png"
    status, out, _ = run_cli(capsys, "--quick", "--no-torch", "--case", CHEAP[0], "--plot", str(path))
    assert status == 0 and str(path) in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the imports fail
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    path.unlink()
    status, _, err = run_cli(capsys, "--quick", "--no-torch", "--case", CHEAP[0], "--plot", str(path))
    assert status == 0 and "pip install" in err and not path.exists()


def test_check_catches_a_wrong_side():
    x = np.arange(6.0, dtype=np.float32)
    good = bench.Contenders({"fastfc": lambda: (x * 2,), "reference": lambda: (x * 2,)})
    assert bench.check(good, np.float32) == []
    off = bench.Contenders({"fastfc": lambda: (x * 2 + 0.01,), "reference": lambda: (x * 2,)})
    assert "fastfc differs" in bench.check(off, np.float32)[0]
    shape = bench.Contenders({"fastfc": lambda: (x[:5],), "reference": lambda: (x,)})
    assert "shape" in bench.check(shape, np.float32)[0]
    # A side that is not compared (torch's own dropout mask) may differ.
    free = bench.Contenders({"fastfc": lambda: (x,), "reference": lambda: (x,), "torch": lambda: (-x,)},
                            compared=("fastfc",))
    assert bench.check(free, np.float32) == []


def test_failing_cases_are_reported(capsys, monkeypatch):
    def broken(setup):
        raise RuntimeError("kernel exploded")
    report = bench.run([bench.Case("broken", "1x1", broken)], quick=True, use_torch=False)
    assert report["results"][0]["error"] == "RuntimeError: kernel exploded"
    out = capsys.readouterr().out
    assert "error: RuntimeError: kernel exploded" in out

    def mismatched(setup):
        return bench.Contenders({"fastfc": lambda: 1.0, "reference": lambda: 2.0})
    monkeypatch.setattr(bench.cases, "CASES", [bench.Case("mismatched", "3", mismatched)])
    status, out, err = run_cli(capsys, "--quick", "--no-torch")
    assert status == 1 and "MISMATCH" in out and "mismatched 3" in err


def test_measure_interleaves_round_robin():
    log = []

    def side(name):
        def call():
            log.append(name)
            time.sleep(0.003)  # one call per sample in quick mode
        return call
    medians, minima, rounds = bench.measure({s: side(s) for s in "abc"}, quick=True)
    assert 3 <= rounds <= 10
    # One calibration call each (a call longer than a sample needs no second
    # look), then every round takes one sample of each side, the first side
    # moving on by one each round.
    rotations = ["abc", "bca", "cab"]
    assert "".join(log) == "abc" + "".join(rotations[r % 3] for r in range(rounds))
    assert all(0.003 <= minima[s] <= medians[s] for s in "abc")


def test_reference_network_and_numpy_adam_match_torch():
    """The baselines are what they claim: the reference MLP and CNN with NumPy
    Adam follow torch's trajectory from the same weights (float64)."""
    torch = pytest.importorskip("torch")
    setup = bench.Setup(dtype=np.float64, rng=np.random.default_rng(3), torch=torch, quick=True)
    tiny_cnn = layer_plan((2, 32, 32), (), 4, filters=(3,))  # conv 2->3, relu, pool, flatten, linear 768->4
    for net, x_shape in ((bench.mlp(12, 9, 7, 5), (6, 12)), (tiny_cnn, (3, 2, 32, 32))):
        nets = bench.side_nets(setup, net, sides=("reference", "torch"))
        x = setup.rng.standard_normal(x_shape)
        y = setup.rng.integers(0, net[-1][1][1], x_shape[0])
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for _ in range(4):
            want = nets["torch"].step(xt, yt)
            assert nets["reference"].step(x, y) == pytest.approx(want, rel=1e-10)


def test_fastfc_network_matches_reference():
    setup = bench.Setup(dtype=np.float64, rng=np.random.default_rng(4), torch=None, quick=True)
    net = bench.mlp(12, 9, 7, 5)
    nets = bench.side_nets(setup, net, sides=("fastfc", "reference"))
    x = setup.rng.standard_normal((6, 12))
    y = setup.rng.integers(0, 5, 6)
    for _ in range(4):
        assert nets["fastfc"].step(x, y) == pytest.approx(nets["reference"].step(x, y), rel=1e-10)


def test_epoch_sides_agree():
    setup = bench.Setup(dtype=np.float64, rng=np.random.default_rng(5), torch=None, quick=True)
    contenders = bench.epoch_contenders(setup, 300, dims=(20, 8, 3), batch=64)
    assert bench.check(contenders, np.float64) == []


def load_contenders():
    """benchmarks/contenders.py, the separate-process training-step benchmark."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "contenders.py"
    spec = importlib.util.spec_from_file_location("contenders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_contenders_runs_each_side_in_its_own_process(tmp_path, capsys):
    contenders = load_contenders()
    rows = contenders.main(["--rounds", "2", "--seconds", "0.05", "--threads", "1",
                            "--workload", "mlp 784-100-10", "--contender", "fastfc",
                            "--contender", "reference", "--json", str(tmp_path / "c.json")])
    (row,) = rows
    assert row["workload"] == "mlp 784-100-10" and row["failures"] == {}
    assert set(row["best_ms"]) == {"fastfc", "reference"}
    assert row["fastest_other"] == "reference"
    assert row["ratio"] == pytest.approx(row["best_ms"]["reference"] / row["best_ms"]["fastfc"])
    # the step's arithmetic: forward and weight gradient of both layers, the input
    # gradient of the second only
    assert row["arithmetic_ms"] * 1e6 * json.loads((tmp_path / "c.json").read_text())[
        "gemm_gflops"] == pytest.approx(2 * 64 * (2 * 784 * 100 + 3 * 100 * 10))
    assert "| mlp 784-100-10 b64 |" in capsys.readouterr().out


def test_contenders_skips_what_cannot_run():
    contenders = load_contenders()
    from fastfc.bench.cases import TRAIN_STEP_NETWORKS
    nets = {name: net for name, net, _ in TRAIN_STEP_NETWORKS}
    assert contenders.available("sklearn", nets["mlp 784-100-10"]) == (
        importlib_spec("sklearn") is not None)
    assert not contenders.available("sklearn", nets["cnn 3x32x32"])  # scikit-learn has no CNN
    assert contenders.available("fastfc", nets["cnn 3x32x32"])


def importlib_spec(name):
    import importlib.util
    return importlib.util.find_spec(name)
