"""Data sets, the training loop, the gradient-check table and the training command."""

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import microtape as mt
from models import TrainingError, TwoLayerNet, fit
from models.data import load_digits, spirals, stratified_split
from models.gradient_check import check_gradients
from models.train import main

from .test_viz_graph import by_name, svg_nodes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    return load_digits()


# -- data ----------------------------------------------------------------------------------

def test_digits_split_is_scaled_stratified_and_fixed(digits):
    x_train, y_train, x_test, y_test = digits
    assert x_train.shape == (1438, 64) and x_test.shape == (359, 64)
    assert x_train.dtype == np.float64 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    # every class is about 20% test, so the class proportions match on both sides
    counts_test, counts_all = np.bincount(y_test), np.bincount(np.concatenate([y_train, y_test]))
    assert np.all(np.abs(counts_test - 0.2 * counts_all) <= 0.5)
    again = load_digits()
    for a, b in zip(digits, again):
        np.testing.assert_array_equal(a, b)
    other = load_digits(seed=1)
    assert not np.array_equal(other[3], y_test) or not np.array_equal(other[2], x_test)


def test_spirals():
    x, y = spirals(50, 4, seed=3)
    assert x.shape == (200, 2) and y.shape == (200,)
    assert np.array_equal(np.bincount(y), [50] * 4)
    assert np.linalg.norm(x, axis=1).max() <= 1.0 + 1e-12
    x2, y2 = spirals(50, 4, seed=3)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(spirals(50, 4, seed=4)[0], x)
    with pytest.raises(ValueError, match="at least 1"):
        spirals(0, 3)
    with pytest.raises(TypeError, match="spirals: n_per_class must be an int, not float"):
        spirals(2.5, 3)


def test_stratified_split_checks_its_arguments():
    x, y = spirals(10, 2)
    x_train, y_train, x_test, y_test = stratified_split(x, y, 0.3, seed=0)
    assert len(x_test) == 6 and np.array_equal(np.bincount(y_test), [3, 3])
    assert len(x_train) + len(x_test) == 20
    with pytest.raises(ValueError, match="between 0 and 1"):
        stratified_split(x, y, 1.0)
    with pytest.raises(ValueError, match="20 examples but y has 19"):
        stratified_split(x, y[:-1])
    # Rounded per class, a fraction near 0 or 1 emptied a side, which fit then trained or tested on
    with pytest.raises(ValueError, match="test_fraction 0.99 leaves the training side empty"):
        stratified_split(x, y, 0.99)
    with pytest.raises(ValueError, match="test_fraction 0.01 leaves the test side empty"):
        stratified_split(x, y, 0.01)
    with pytest.raises(ValueError, match=r"one class index per example.*y.argmax\(axis=1\)"):
        stratified_split(x, np.eye(2)[y])


# -- the training loop --------------------------------------------------------------------

def train_digits(digits, epochs=8, seed=0):
    x_train, y_train, x_test, y_test = digits
    net = TwoLayerNet(64, 64, 10, seed=seed)
    opt = mt.optim.SGD(net.params, lr=0.5, momentum=0.9)
    history = fit(net, opt, x_train, y_train, epochs=epochs, batch_size=32, seed=seed,
                  test=(x_test, y_test))
    return net, history


def test_short_seeded_run_learns_the_digits(digits):
    net, history = train_digits(digits)
    x_test, y_test = digits[2], digits[3]
    assert net.accuracy(x_test, y_test) >= 0.95
    assert history.test_accuracy[-1] == net.accuracy(x_test, y_test)
    assert len(history.loss) == 8 and history.loss[-1] < 0.25 * history.loss[0]
    assert history.steps == 8 * 45  # ceil(1438 / 32) batches per epoch


def test_same_seed_gives_bit_identical_results(digits):
    a, history_a = train_digits(digits, epochs=2, seed=4)
    b, history_b = train_digits(digits, epochs=2, seed=4)
    c, _ = train_digits(digits, epochs=2, seed=5)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name].value, b.params[name].value)
    assert history_a.loss == history_b.loss
    assert not np.array_equal(a.params["W1"].value, c.params["W1"].value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_the_data_is_refused_before_any_update(bad):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, size=40)
    x[25, 2] = bad
    net = TwoLayerNet(5, 4, 3, seed=0)
    before = {name: p.value.copy() for name, p in net.params.items()}
    with pytest.raises(ValueError, match=r"NaN or inf \(1 values, the first at row 25, column 2\)"):
        fit(net, mt.optim.SGD(net.params, lr=0.1), x, y, epochs=2, batch_size=10)
    for name, p in net.params.items():
        np.testing.assert_array_equal(p.value, before[name])


def test_fit_refuses_an_optimizer_of_another_network_and_bad_settings_before_any_update():
    # An optimizer made on another network of the same shapes trained that network,
    # silently; a bad test set failed after the first epoch had trained the parameters
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, size=40)
    net, other = TwoLayerNet(5, 4, 3, seed=0), TwoLayerNet(5, 4, 3, seed=1)
    tensors = [*net.params.values(), *other.params.values()]
    before = [p.value.copy() for p in tensors]
    refused = [
        (mt.InputError, "does not hold this network's parameters",
         dict(optimizer=mt.optim.SGD(other.params, lr=0.1))),
        (mt.InputError, "does not hold", dict(optimizer=mt.optim.SGD([net.params["W1"]], lr=0.1))),
        (TypeError, "optimizer must be", dict(optimizer=None)),
        (TypeError, "epochs must be an int, not float", dict(epochs=2.5)),
        (TypeError, "batch_size must be an int, not str", dict(batch_size="10")),
        (TypeError, "seed must be an int", dict(seed="a")),
        (TypeError, "test must be a pair", dict(test=x)),
        (mt.ShapeError, r"x has shape \(40, 3\)", dict(test=(x[:, :3], y))),
        (ValueError, "fit: test x has 40 examples but y has 39", dict(test=(x, y[:-1]))),
        (mt.InputError, "fit: test: class index 3 is out of range", dict(test=(x, y + 1))),
        (mt.ShapeError, "one label per example", dict(y=None)),
    ]
    for error, match, change in refused:
        args = dict(optimizer=mt.optim.SGD(net.params, lr=0.1), x=x, y=y, epochs=2, batch_size=10)
        args.update(change)
        with pytest.raises(error, match=match):
            fit(net, args.pop("optimizer"), args.pop("x"), args.pop("y"), **args)
    for p, was in zip(tensors, before):
        np.testing.assert_array_equal(p.value, was)


def test_fit_takes_an_optimizer_made_on_a_list_of_the_parameters_and_tensor_data():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, size=40)
    runs = []
    for make in (lambda n: mt.optim.SGD(n.params, lr=0.1),
                 lambda n: mt.optim.SGD(n.parameters()[::-1], lr=0.1),
                 # a dict keyed by numbers was handed a list, which its step refused
                 lambda n: mt.optim.SGD(dict(enumerate(n.parameters())), lr=0.1),
                 lambda n: mt.optim.Adam(dict(reversed(n.params.items())), lr=0.01)):
        net = TwoLayerNet(5, 4, 3, seed=0)
        fit(net, make(net), mt.Tensor(x), y, epochs=2, batch_size=10)
        runs.append({name: p.value.copy() for name, p in net.params.items()})
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name])
        np.testing.assert_array_equal(runs[0][name], runs[2][name])
    assert not np.array_equal(runs[0]["W1"], runs[3]["W1"])  # Adam: trained, differently


def test_non_finite_loss_stops_before_the_update():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, size=40)
    net = TwoLayerNet(5, 4, 3, seed=0)
    net.params["b2"].value[1] = np.inf  # e.g. parameters loaded from a broken run
    with pytest.raises(TrainingError, match=r"epoch 1, batch 1.*\['b2'\] hold NaN or inf"):
        fit(net, mt.optim.SGD(net.params, lr=0.1), x, y, epochs=1, batch_size=10)
    assert np.isfinite(net.params["W1"].value).all()  # no update ran


def test_divergence_is_reported_with_a_hint():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)) * 100, rng.integers(0, 3, size=40)
    from models import MLP
    net = MLP((5, 16, 3), activation="relu", seed=0)
    with pytest.raises(TrainingError, match="diverged.*lower the learning rate"):
        fit(net, mt.optim.SGD(net.params, lr=1e30), x, y, epochs=5, batch_size=10)


def test_a_runaway_but_finite_loss_stops_training():
    # The fused loss stays finite however large the logits, so lr=1e30 never makes a NaN:
    # it is the epoch's mean loss, a million million times the first step's, that says so.
    x, y = spirals(40, 3, seed=0)
    net = TwoLayerNet(2, 8, 3, seed=0)
    seen = []
    with pytest.raises(TrainingError, match=r"diverged at epoch 1: loss \d\.\de\+\d+ \(first step "
                                            r"1\.\d\).*lower the learning rate \(now lr=1e\+30\)"):
        fit(net, mt.optim.SGD(net.params, lr=1e30), x, y, epochs=3, batch_size=16,
            on_epoch=lambda epoch, history: seen.append(epoch))
    assert seen == []  # stopped at the first epoch's check, before its report


def test_a_rising_loss_is_not_yet_divergence():
    x, y = spirals(40, 3, seed=0)
    net = TwoLayerNet(2, 8, 3, seed=0)
    history = fit(net, mt.optim.SGD(net.params, lr=20.0, momentum=0.9), x, y, epochs=4,
                  batch_size=16)
    assert len(history.loss) == 4 and max(history.loss) > 1.5 * history.loss[0]  # bad, not runaway


def _broken_net(*sizes):
    net = TwoLayerNet(*sizes, seed=0)
    net.params["b1"].value[1] = np.inf  # e.g. parameters loaded from a broken run
    return net


def test_fit_in_anomaly_mode_names_the_op_that_read_the_bad_parameter(tmp_path):
    x, y = spirals(20, 3, seed=0)
    net = _broken_net(2, 4, 3)
    with pytest.raises(mt.AnomalyError) as info:
        fit(net, mt.optim.SGD(net.params, lr=0.1), x, y, epochs=1, batch_size=10,
            detect_anomaly=True)
    err = info.value
    assert err.phase == "forward" and err.kind == "Inf" and err.input_name == "b1"
    assert err.op == "add" and err.tape is not None and err.node in err.tape.nodes
    if shutil.which("dot"):
        import viz
        assert "b1" in viz.render_anomaly(err, tmp_path / "anomaly.svg").read_text()
    with pytest.raises(ValueError, match="drop one"):
        fit(net, mt.optim.SGD(net.params, lr=0.1), x, y, epochs=1, batch_size=10,
            detect_anomaly=True, compile=True)


def test_fit_checks_the_data_before_training():
    net = TwoLayerNet(5, 4, 3, seed=0)
    before = net.params["W1"].value.copy()
    opt = mt.optim.SGD(net.params, lr=0.1)
    x = np.zeros((6, 5))
    with pytest.raises(mt.InputError, match=r"fit: class index 3 is out of range for 3 classes"):
        fit(net, opt, x, np.array([0, 1, 2, 0, 1, 3]), epochs=1, batch_size=2)
    with pytest.raises(mt.ShapeError, match="n_in=5"):
        fit(net, opt, np.zeros((6, 4)), np.zeros(6, dtype=int), epochs=1, batch_size=2)
    with pytest.raises(ValueError, match="6 examples but y has 5"):
        fit(net, opt, x, np.zeros(5, dtype=int), epochs=1, batch_size=2)
    with pytest.raises(ValueError, match="at least 1"):
        fit(net, opt, x, np.zeros(6, dtype=int), epochs=0, batch_size=2)
    np.testing.assert_array_equal(net.params["W1"].value, before)


# -- the gradient-check table -----------------------------------------------------------

def test_gradient_check_table(digits):
    net = TwoLayerNet(64, 12, 10, seed=0)
    check = check_gradients(net, digits[0][:8], digits[1][:8], max_elements=300)
    assert [r.name for r in check.rows] == ["W1", "b1", "W2", "b2", "x"]
    assert check.passed
    for row in check.rows:
        assert row.tape_vs_closed <= 1e-12 and row.tape_vs_numeric <= 1e-6
    w1 = check.rows[0]
    assert w1.shape == (64, 12) and w1.checked == 300  # sampled: 768 elements > 300
    text = str(check)
    assert "W1   (64, 12)" in text and "300/768" in text and "NO" not in text
    with pytest.raises(TypeError, match="TwoLayerNet"):
        from models import MLP
        check_gradients(MLP((64, 10)), digits[0][:2], digits[1][:2])


# -- the command ------------------------------------------------------------------------------

def test_command_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "models.train", "--epochs", "3", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy:" in result.stdout
    for name in ("W1", "b1", "W2", "b2", "x   "):
        assert f"\n{name}" in result.stdout
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")
    if shutil.which("dot"):
        svg = (out / "graph.svg").read_bytes()  # one batch's tape, drawn by viz/
        ET.fromstring(svg)
        nodes = svg_nodes(svg)
        for name in ("W1", "b1", "W2", "b2"):
            assert "grad =" in by_name(nodes, name)["tooltip"]
    else:  # the graph's source is still written, and stderr says how to install Graphviz
        assert (out / "graph.dot").exists() and "apt-get install graphviz" in result.stderr
    net = TwoLayerNet.load(out / "params.npz")
    assert net.sizes == (64, 64, 10)
    accuracy = float(result.stdout.split("test accuracy: ")[1].split("%")[0]) / 100
    x_test, y_test = load_digits()[2:]
    assert abs(net.accuracy(x_test, y_test) - accuracy) < 1e-4
    assert result.stderr == "" or not shutil.which("dot")


def test_command_stops_a_diverging_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "models.train", "--dataset", "spirals", "--hidden", "8",
         "--epochs", "3", "--lr", "1e30", "--quiet", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "diverged at epoch 1" in result.stderr and "try a smaller --lr (now 1e+30)" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "gradient check" not in result.stdout and not (tmp_path / "params.npz").exists()


def test_command_in_anomaly_mode_draws_the_anomaly_and_exits_1(tmp_path, monkeypatch, capsys):
    import models.train
    monkeypatch.setattr(models.train, "TwoLayerNet", lambda *sizes, seed, dtype: _broken_net(*sizes))
    assert main(["--dataset", "spirals", "--hidden", "4", "--epochs", "1", "--quiet",
                 "--detect-anomaly", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("python -m models.train: error: add read an ")
    assert "'b1'" in err and "to draw it" not in err
    if shutil.which("dot"):
        assert f"drawn in {tmp_path / 'anomaly.svg'}" in err
        ET.parse(tmp_path / "anomaly.svg")
    assert not (tmp_path / "params.npz").exists()
    with pytest.raises(SystemExit) as info:
        main(["--detect-anomaly", "--compile", "--out", str(tmp_path)])
    assert info.value.code == 2 and "drop one" in capsys.readouterr().err


def test_command_on_spirals_with_adam(tmp_path, capsys):
    assert main(["--dataset", "spirals", "--optimizer", "adam", "--epochs", "5", "--hidden", "8",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "spirals: 480 training and 120 test examples, 2 features, 3 classes" in out
    assert "Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-08)" in out
    assert TwoLayerNet.load(tmp_path / "params.npz").sizes == (2, 8, 3)


def test_quiet_prints_only_the_result_lines(tmp_path, capsys):
    assert main(["--dataset", "spirals", "--epochs", "2", "--hidden", "8", "--quiet",
                 "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("test accuracy: ")
    assert lines[1].startswith("gradient check passed on W1, b1, W2, b2, x: worst relative error")
    assert lines[2].startswith("wrote ") and "params.npz" in lines[2]


def test_dtype_float32_trains_in_float32(tmp_path, capsys):
    assert main(["--dataset", "spirals", "--epochs", "2", "--hidden", "8", "--dtype", "float32",
                 "--out", str(tmp_path)]) == 0
    assert "dtype=float32" in capsys.readouterr().out
    assert TwoLayerNet.load(tmp_path / "params.npz").dtype == np.float32
    with pytest.raises(SystemExit):
        main(["--dtype", "float16"])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_continues_a_run_where_it_stopped(tmp_path, capsys, optimizer):
    flags = ["--dataset", "spirals", "--hidden", "8", "--optimizer", optimizer, "--quiet"]
    assert main([*flags, "--epochs", "1", "--out", str(tmp_path / "a")]) == 0
    saved = mt.optim.SGD if optimizer == "sgd" else mt.optim.Adam
    from models.checkpoint import load_arrays
    state = load_arrays(tmp_path / "a" / "optimizer.npz")
    assert str(state["optimizer"]) == saved.__name__ and int(state["steps"]) == 15
    assert main([*flags, "--epochs", "1", "--resume", "--out", str(tmp_path / "a")]) == 0
    assert int(load_arrays(tmp_path / "a" / "optimizer.npz")["steps"]) == 30
    # The same as training the two epochs by hand, with the batch order starting over.
    x_train, y_train, x_test, y_test = stratified_split(*spirals(200, 3, seed=0), 0.2, seed=0)
    net = TwoLayerNet(2, 8, 3, seed=0)
    opt = (mt.optim.SGD(net.params, lr=0.5, momentum=0.9) if optimizer == "sgd"
           else mt.optim.Adam(net.params, lr=0.01))
    for _ in range(2):
        fit(net, opt, x_train, y_train, epochs=1, batch_size=32, seed=0)
    resumed = TwoLayerNet.load(tmp_path / "a" / "params.npz")
    for name, p in net.params.items():
        np.testing.assert_array_equal(resumed.params[name].value, p.value)
    capsys.readouterr()
    assert main([*flags, "--epochs", "1", "--resume", "--out", str(tmp_path / "none")]) == 1
    assert "--resume: [Errno 2] no such checkpoint file" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--hidden", "0"], "argument --hidden: expected a positive int, got '0'"),
    (["--lr", "-0.1"], "argument --lr: expected a positive float"),
    (["--dataset", "mnist"], "invalid choice: 'mnist'"),
    (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    (["--epochs", "many"], "argument --epochs"),
    (["--momentum", "1.5"], "argument --momentum"),
    (["--optimizer", "adam", "--momentum", "0.5"], "argument --momentum: it is sgd's"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_flags_exit_non_zero_with_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(flags)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_bad_flag_from_the_shell(tmp_path):
    result = subprocess.run([sys.executable, "-m", "models.train", "--batch-size", "0"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--batch-size" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_out_is_one_line_and_trains_nothing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "below"):
        assert main(["--out", str(out), "--quiet"]) == 1
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and str(out) in captured.err
        assert "--out" in captured.err and captured.out == ""


def test_missing_scikit_learn_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import now fails
    monkeypatch.setattr("microtape._install._VENV", tmp_path / "no-venv")  # nor in a project venv
    with pytest.raises(ImportError, match=r"microtape\[examples\]"):
        load_digits()
    assert main(["--quiet", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scikit-learn" in err and "microtape[examples]" in err


def test_without_matplotlib_the_plot_is_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setattr("microtape._install._VENV", tmp_path / "no-venv")  # nor in a project venv
    assert main(["--dataset", "spirals", "--epochs", "1", "--quiet", "--out", str(tmp_path)]) == 0
    assert "loss.png skipped: matplotlib is not installed" in capsys.readouterr().err
    assert (tmp_path / "params.npz").exists() and not (tmp_path / "loss.png").exists()


def test_a_hidden_layer_too_big_for_the_machine_is_a_bad_flag(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["--hidden", "100000000", "--quiet", "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "error: argument --hidden: 100000000 hidden units need about " in err
    assert "of memory to train, and this machine has" in err
    assert not out.exists()  # refused before anything was made


def test_running_out_of_memory_anyway_is_one_line(tmp_path, monkeypatch, capsys):
    import models.train

    class Greedy(TwoLayerNet):
        def __init__(self, *args, **kwargs):
            raise MemoryError

    monkeypatch.setattr(models.train, "TwoLayerNet", Greedy)
    assert main(["--dataset", "spirals", "--quiet", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "python -m models.train: error: out of memory; try a smaller --hidden or --batch-size\n"
