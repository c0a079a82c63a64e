"""TwoLayerNet and MLP: the tape against the closed form and finite differences, bad input, save/load."""

import os
import zipfile

import numpy as np
import pytest

import microtape as mt
from models import MLP, CheckpointError, TwoLayerNet, closed_form_gradients, fit
from models.checkpoint import load_arrays


def max_rel(a, b):
    """max|a − b| relative to the largest entry of b (a gradient's own scale)."""
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


def batch(n, n_in, n_out, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in)) if n else rng.normal(size=n_in)
    labels = rng.integers(0, n_out, size=n) if n else int(rng.integers(0, n_out))
    return x, labels


# -- the tape against the closed form ------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n", [0, 1, 7, 32])  # 0: one example as a 1-d row
def test_tape_matches_closed_form(n, reduction):
    net = TwoLayerNet(6, 5, 4, seed=1)
    x_value, labels = batch(n, 6, 4, seed=n)
    x = mt.Tensor(x_value, name="x")
    with mt.Tape() as tape:
        loss = net.loss(x, labels, reduction=reduction)
    assert loss.shape == ()
    grads = tape.gradient(loss, {**net.params, "x": x})
    expected = closed_form_gradients(net.params, x_value, labels, reduction=reduction)
    assert set(expected) == {"W1", "b1", "W2", "b2", "x"}
    for name, g in grads.items():
        assert g.shape == expected[name].shape, name
        assert max_rel(g, expected[name]) <= 1e-10, name


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_closed_form_with_label_rows(reduction):
    net = TwoLayerNet(5, 4, 3, seed=2)
    x, labels = batch(9, 5, 3, seed=3)
    soft = np.random.default_rng(4).dirichlet(np.ones(3), size=9)  # soft labels, rows sum to 1
    for rows in (np.eye(3)[labels], soft):
        with mt.Tape() as tape:
            loss = net.loss(x, rows, reduction=reduction)
        grads = tape.gradient(loss, net.params)
        expected = closed_form_gradients(net.params, x, rows, reduction=reduction)
        for name in grads:
            assert max_rel(grads[name], expected[name]) <= 1e-10, name


def test_closed_form_mean_is_sum_over_n():
    net = TwoLayerNet(4, 3, 2, seed=0)
    x, labels = batch(8, 4, 2)
    total = closed_form_gradients(net.params, x, labels, reduction="sum")
    mean = closed_form_gradients(net.params, x, labels, reduction="mean")
    for name in total:
        np.testing.assert_allclose(mean[name] * 8, total[name], rtol=1e-13, atol=0)


def test_closed_form_accepts_plain_arrays_and_rejects_bad_arguments():
    net = TwoLayerNet(4, 3, 2, seed=0)
    arrays = {name: p.value for name, p in net.params.items()}
    x, labels = batch(3, 4, 2)
    a = closed_form_gradients(arrays, x, labels)
    b = closed_form_gradients(net.params, x, labels)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    with pytest.raises(KeyError, match="W2"):
        closed_form_gradients({"W1": arrays["W1"], "b1": arrays["b1"]}, x, labels)
    with pytest.raises(ValueError, match="reduction"):
        closed_form_gradients(arrays, x, labels, reduction="max")
    with pytest.raises(mt.InputError, match=r"closed_form_gradients: class index 2 .* \(valid: 0 to 1\)"):
        closed_form_gradients(arrays, x, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="4 features"):
        closed_form_gradients(arrays, x[:, :3], labels)
    # A deeper MLP's params gave the first two layers' gradients as if there were no third
    deeper = MLP((4, 3, 3, 2), "sigmoid", seed=0).params
    with pytest.raises(KeyError, match=r"params has \['W3', 'b3'\] beyond W1, b1, W2 and b2.*tape"):
        closed_form_gradients(deeper, x, labels)
    with pytest.raises(ValueError, match=r"W1 \(4, 3\), b1 \(2,\), .* do not fit together"):
        closed_form_gradients({**arrays, "b1": np.zeros(2)}, x, labels)


# -- finite differences ------------------------------------------------------------

def test_cs224n_sanity_check():
    """N=20 examples, sizes 10-5-10, random one-hot labels: every parameter passes gradcheck."""
    rng = np.random.default_rng(224)
    x = rng.normal(size=(20, 10))
    onehot = np.eye(10)[rng.integers(0, 10, size=20)]
    net = TwoLayerNet(10, 5, 10, seed=224)
    report = mt.gradcheck(lambda **p: mt.softmax_cross_entropy(net.forward(x, p), onehot), net.params)
    assert report.passed
    assert [c.name for c in report.inputs] == ["W1", "b1", "W2", "b2"]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_mlp_depth_three_passes_gradcheck(activation):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 4))
    labels = rng.integers(0, 3, size=6)
    net = MLP((4, 7, 5, 3), activation=activation, seed=3)
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    report = mt.gradcheck(lambda **p: mt.softmax_cross_entropy(net.forward(x, p), labels),
                          net.params, rtol=1e-5, atol=1e-8)
    assert report.passed
    # net.loss on a tape gives the same gradients gradcheck verified
    with mt.Tape() as tape:
        loss = net.loss(x, labels)
    grads = tape.gradient(loss, net.params)
    assert all(grads[k].shape == net.params[k].shape for k in grads)


# -- construction ------------------------------------------------------------------------

def test_two_layer_params_are_named_and_glorot_initialised():
    net = TwoLayerNet(64, 32, 10, seed=0)
    assert list(net.params) == ["W1", "b1", "W2", "b2"]
    shapes = {name: p.shape for name, p in net.params.items()}
    assert shapes == {"W1": (64, 32), "b1": (32,), "W2": (32, 10), "b2": (10,)}
    for name, p in net.params.items():
        assert isinstance(p, mt.Tensor) and p.name == name and p.dtype == np.float64
    assert not net.params["b1"].value.any() and not net.params["b2"].value.any()
    for W, (fan_in, fan_out) in ((net.params["W1"], (64, 32)), (net.params["W2"], (32, 10))):
        limit = np.sqrt(6 / (fan_in + fan_out))
        assert np.abs(W.value).max() <= limit
        assert np.abs(W.value).max() > 0.9 * limit  # drawn across the range, not tiny
    assert (net.n_in, net.n_hidden, net.n_out) == (64, 32, 10)


def test_seed_fixes_the_network():
    a, b, c = TwoLayerNet(5, 4, 3, seed=7), TwoLayerNet(5, 4, 3, seed=7), TwoLayerNet(5, 4, 3, seed=8)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name].value, b.params[name].value)
    assert not np.array_equal(a.params["W1"].value, c.params["W1"].value)


def test_two_layer_net_is_the_sigmoid_mlp():
    x, _ = batch(5, 6, 3)
    net, mlp = TwoLayerNet(6, 4, 3, seed=5), MLP((6, 4, 3), seed=5)
    np.testing.assert_array_equal(net(x).value, mlp(x).value)


def test_call_predict_and_accuracy():
    net = TwoLayerNet(6, 4, 3, seed=0)
    x, labels = batch(10, 6, 3)
    logits = net(x)
    assert isinstance(logits, mt.Tensor) and logits.shape == (10, 3)
    assert net(x[0]).shape == (3,)
    with mt.Tape() as tape:
        predicted = net.predict(x)
    assert len(tape) == 0  # predict never records
    np.testing.assert_array_equal(predicted, np.argmax(logits.value, axis=1))
    assert net.predict(x[0]) == predicted[0]
    assert net.accuracy(x, labels) == np.mean(predicted == labels)
    assert net.accuracy(x, np.eye(3)[labels]) == net.accuracy(x, labels)


def test_float32_network_stays_float32():
    net = TwoLayerNet(6, 4, 3, seed=0, dtype=np.float32)
    x, labels = batch(5, 6, 3)
    with mt.Tape() as tape:
        loss = net.loss(x, labels)  # float64 data is cast to the network's dtype
    assert loss.dtype == np.float32
    grads = tape.gradient(loss, net.params)
    assert all(g.dtype == np.float32 for g in grads.values())
    expected = closed_form_gradients(net.params, x, labels)
    for name in grads:
        assert max_rel(grads[name], expected[name]) <= 1e-5


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="activation"):
        MLP((3, 2), activation="softplus")
    with pytest.raises(ValueError, match="at least the input and output"):
        MLP((3,))
    with pytest.raises(ValueError, match="at least 1"):
        MLP((3, 0, 2))
    with pytest.raises(TypeError, match="sequence of ints"):
        MLP((3, 2.5, 2))
    with pytest.raises(TypeError, match="float32 or float64"):
        TwoLayerNet(3, 2, 2, dtype=np.int32)


# -- bad input ---------------------------------------------------------------------------

def test_wrong_number_of_features_names_n_in():
    net = TwoLayerNet(64, 8, 10, seed=0)
    with pytest.raises(mt.ShapeError, match=r"n_in=64.*\(N, 64\)") as info:
        net.loss(np.zeros((5, 63)), np.zeros(5, dtype=int))
    assert "(5, 63)" in str(info.value)
    with pytest.raises(mt.ShapeError, match="n_in=64"):
        net(np.zeros((2, 3, 64)))
    with pytest.raises(mt.ShapeError, match="n_in=64"):
        net.predict(np.zeros(10))
    with pytest.raises(mt.ShapeError, match="n_in=64"):
        net(mt.Tensor(np.zeros((4, 8))))


def test_labels_outside_the_classes_raise_value_error():
    net = TwoLayerNet(4, 3, 5, seed=0)
    x, _ = batch(3, 4, 5)
    for bad in ([0, 5, 1], [-1, 0, 0]):
        with pytest.raises(ValueError, match="out of range for 5 classes"):
            net.loss(x, np.array(bad))


# -- save and load ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_save_load_round_trip_is_exact(tmp_path, dtype):
    net = TwoLayerNet(7, 5, 3, seed=11, dtype=dtype)
    path = net.save(tmp_path / "net.npz")
    loaded = TwoLayerNet.load(path)
    assert type(loaded) is TwoLayerNet and loaded.sizes == (7, 5, 3)
    for name, p in net.params.items():
        assert loaded.params[name].name == name
        assert loaded.params[name].dtype == dtype
        np.testing.assert_array_equal(loaded.params[name].value, p.value)
    x, _ = batch(4, 7, 3)
    np.testing.assert_array_equal(loaded(x).value, net(x).value)
    assert not [f for f in os.listdir(tmp_path) if f != "net.npz"]  # no temp file left behind


def test_mlp_round_trip_keeps_activation(tmp_path):
    net = MLP((3, 6, 4, 2), activation="tanh", seed=1)
    loaded = MLP.load(net.save(tmp_path / "mlp.npz"))
    assert loaded.activation == "tanh" and loaded.sizes == (3, 6, 4, 2)
    x, _ = batch(5, 3, 2)
    np.testing.assert_array_equal(loaded(x).value, net(x).value)
    with pytest.raises(CheckpointError, match="MLP.load"):
        TwoLayerNet.load(tmp_path / "mlp.npz")


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, W1=np.array([{"payload": 1}], dtype=object), b1=np.zeros(2))
    with pytest.raises(CheckpointError, match="object array"):
        TwoLayerNet.load(path)


def test_truncated_file_gives_a_clear_error(tmp_path):
    path = TwoLayerNet(20, 10, 5, seed=0).save(tmp_path / "net.npz")
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 10):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="net.npz") as info:
            TwoLayerNet.load(path)
        assert "truncated or corrupt" in str(info.value) or "not a readable" in str(info.value)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        TwoLayerNet.load(tmp_path / "nothing.npz")
    (tmp_path / "text.npz").write_text("not an archive at all\n")
    with pytest.raises(CheckpointError, match="text.npz"):
        TwoLayerNet.load(tmp_path / "text.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match="single .npy"):
        TwoLayerNet.load(tmp_path / "single.npy")
    with pytest.raises(CheckpointError, match="folder"):
        TwoLayerNet.load(tmp_path)


@pytest.mark.parametrize("arrays, message", [
    ({"W1": np.zeros((3, 2)), "b1": np.zeros(2), "W2": np.zeros((2, 4))}, r"missing \['b2'\]"),
    ({"W1": np.zeros((3, 2)), "b1": np.zeros(2), "W2": np.zeros((2, 4)), "b2": np.zeros(4),
      "bias": np.zeros(1)}, "unexpected entries"),
    ({"W1": np.zeros((3, 2)), "b1": np.zeros(5), "W2": np.zeros((2, 4)), "b2": np.zeros(4)},
     r"b1 has shape \(5,\)"),
    ({"W1": np.zeros((3, 2)), "b1": np.zeros(2), "W2": np.zeros((6, 4)), "b2": np.zeros(4)},
     "layer before it has 2 outputs"),
    ({"W1": np.zeros((3, 2), dtype=np.int64), "b1": np.zeros(2, dtype=np.int64),
      "W2": np.zeros((2, 4), dtype=np.int64), "b2": np.zeros(4, dtype=np.int64)}, "float32 or all float64"),
    ({"W1": np.zeros((3, 2), dtype=np.float32), "b1": np.zeros(2),
      "W2": np.zeros((2, 4)), "b2": np.zeros(4)}, "W1: float32"),
    ({"W1": np.zeros((3, 2)), "b1": np.zeros(2), "W2": np.zeros((2, 4)), "b2": np.zeros(4),
      "activation": np.array("swish")}, "activation"),
])
def test_mismatched_files_are_refused(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=message):
        TwoLayerNet.load(path)


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = TwoLayerNet(4, 3, 2, seed=1).save(tmp_path / "net.npz")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt  # the save is cut off midway

    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(KeyboardInterrupt):
        TwoLayerNet(4, 3, 2, seed=2).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.npz"]


def test_saved_file_is_a_plain_npz(tmp_path):
    path = MLP((2, 3), seed=0).save(tmp_path / "m.npz")
    assert zipfile.is_zipfile(path)
    arrays = load_arrays(path)
    assert set(arrays) == {"W1", "b1", "activation"} and str(arrays["activation"]) == "sigmoid"


def test_accuracy_and_fit_take_one_hot_bool_rows_as_the_loss_does():
    # The loss takes bool label rows; accuracy compared them with the predictions as they
    # were, and fit raised a ShapeError after its first epoch had changed the parameters
    rng = np.random.default_rng(0)
    x, classes = rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
    net = TwoLayerNet(4, 3, 3, seed=0)
    assert net.accuracy(x, np.eye(3, dtype=bool)[classes]) == net.accuracy(x, classes)
    fit(net, mt.optim.SGD(net.params, lr=0.1), x, np.eye(3, dtype=bool)[classes], epochs=1,
        batch_size=2)


def test_accuracy_needs_one_label_per_example():
    net = TwoLayerNet(4, 3, 2, seed=0)
    x, labels = batch(5, 4, 2)
    with pytest.raises(mt.ShapeError, match=r"class-index labels must have shape \(5,\).*got \(4,\)"):
        net.accuracy(x, labels[:4])


def test_a_network_refuses_a_dtype_seed_or_activation_it_cannot_use_naming_it():
    # numpy's own errors, naming neither the network nor the argument, or "unhashable type"
    for make, error, match in [(lambda: TwoLayerNet(2, 3, 2, dtype="foo"), TypeError, "dtype must be"),
                               (lambda: TwoLayerNet(2, 3, 2, seed="a"), TypeError, "seed must be an int"),
                               (lambda: MLP((2, 3, 2), activation=["relu"]), ValueError,
                                "activation must be one of")]:
        with pytest.raises(error, match=rf"(TwoLayerNet|MLP): {match}"):
            make()


def test_accuracy_checks_its_labels_as_the_loss_does():
    # Out-of-range labels scored 0 and rows of the wrong width scored as argmax found them,
    # silently; float class labels were blamed on their shape
    net = TwoLayerNet(4, 3, 3, seed=0)
    x, labels = np.random.default_rng(0).normal(size=(6, 4)), np.array([0, 1, 2, 0, 1, 2])
    for bad, error, match in [(labels + 3, mt.InputError, "class index 3 is out of range"),
                              (np.eye(5)[labels], mt.ShapeError, r"shape \(6, 3\), got \(6, 5\)"),
                              (labels.astype(float), mt.InputError, "only if they are integers")]:
        with pytest.raises(error, match=rf"TwoLayerNet.accuracy: .*{match}"):
            net.accuracy(x, bad)
    assert net.accuracy(x, np.eye(3)[labels]) == net.accuracy(x, mt.Tensor(np.eye(3)[labels]))
    assert net.accuracy(x[0], 0) in (0.0, 1.0)  # one example, one label


# -- one label check --------------------------------------------------------------------

_ROWS = np.full((4, 3), 1 / 3)


@pytest.mark.parametrize("labels, error", [
    (np.array([0, 1, 3, 0]), mt.InputError),               # out of range
    (np.array([0, -1, 2, 0]), mt.InputError),              # negative
    (np.array([[0], [1], [2], [0]]), mt.ShapeError),       # indices of the wrong shape
    (np.eye(4)[:, :3] * 2, mt.InputError),                 # rows that do not sum to 1
    (np.where(np.eye(4, 3) > 0, np.nan, _ROWS), mt.InputError),  # a row holding NaN
    (np.full((4, 2), 0.5), mt.ShapeError),                 # rows of the wrong width
    (np.array(["a", "b", "c", "a"]), mt.InputError),       # neither indices nor rows
])
def test_fit_the_closed_form_and_the_loss_refuse_the_same_labels_the_same_way(labels, error):
    net = TwoLayerNet(5, 4, 3, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 5))
    messages = {}
    calls = {
        "softmax_cross_entropy": lambda: net.loss(x, labels),
        "fit": lambda: fit(net, mt.optim.SGD(net.params, lr=0.1), x, labels, epochs=1,
                           batch_size=2),
        "closed_form_gradients": lambda: closed_form_gradients(net.params, x, labels),
    }
    for caller, call in calls.items():
        with pytest.raises(error) as caught:
            call()
        assert type(caught.value) is error
        text = str(caught.value)
        assert text.startswith(f"{caller}: "), text
        messages[caller] = text[len(caller) + 2:]
    assert len(set(messages.values())) == 1, messages


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_closed_form_of_a_saturated_sigmoid_is_finite_and_quiet(dtype):
    # x W1 + b1 far below −88 (float32) or −709 (float64): exp(−t) overflows to inf, and
    # h = 1 / (1 + inf) = 0 exactly; no RuntimeWarning (an error in this suite).
    net = TwoLayerNet(2, 3, 2, seed=0, dtype=dtype)
    x = np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=dtype)
    grads = closed_form_gradients(net.params, x, np.array([0, 1]))
    for g in grads.values():
        assert g.dtype == dtype and np.isfinite(g).all()
