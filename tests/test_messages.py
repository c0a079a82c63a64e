"""Errors say what the user did wrong, not something near it."""

from __future__ import annotations

import re

import numpy as np
import pytest

import microtape as mt
from models import TwoLayerNet, fit


# -- an axis or a permutation is not a shape mismatch ------------------------------

def test_sum_over_an_axis_out_of_range():
    with pytest.raises(mt.InputError) as info:
        mt.sum(mt.Tensor(np.ones(3)), axis=5)
    assert str(info.value) == ("sum: axis 5 is out of range for an array of 1 dimension (shape (3,)); "
                               "valid axes are -1 to 0")
    assert "cannot combine" not in str(info.value)


@pytest.mark.parametrize("op", [mt.mean, mt.softmax, mt.log_softmax])
def test_other_ops_name_the_axis_too(op):
    with pytest.raises(mt.InputError, match=rf"{op.name}: axis -3 is out of range for an array of "
                                            r"2 dimensions \(shape \(2, 3\)\)"):
        op(mt.Tensor(np.ones((2, 3))), axis=-3)


def test_an_axis_of_a_scalar():
    with pytest.raises(mt.InputError, match=r"sum: axis 1 is out of range: the input is a scalar"):
        mt.sum(mt.Tensor(1.0), axis=1)


@pytest.mark.parametrize("shape, axes", [((2, 3), (0, 0)), ((2, 3), (1, 2)), ((2, 3, 4), (0, 1))])
def test_transpose_with_axes_that_do_not_fit(shape, axes):
    with pytest.raises(mt.InputError, match=re.escape(f"transpose: axes {axes} do not fit an array "
                                                      f"of shape {shape}")):
        mt.transpose(mt.Tensor(np.ones(shape)), axes)


def test_transpose_of_a_vector_with_two_axes():
    with pytest.raises(mt.InputError) as info:
        mt.Tensor(np.ones(3)).transpose(0, 1)
    assert "transpose: axes (0, 1) do not fit an array of shape (3,)" in str(info.value)
    assert "cannot combine shapes" not in str(info.value)


def test_a_value_problem_in_an_elementwise_op_is_not_called_a_shape_mismatch():
    with pytest.raises(mt.InputError, match="pow: Integers to negative integer powers") as info:
        mt.pow(np.array([2, 3]), np.array([-1, 2]))
    assert "cannot combine shapes" not in str(info.value)


def test_a_real_mismatch_still_reads_as_one():
    with pytest.raises(mt.ShapeError, match=r"add: cannot combine shapes \(2, 3\) and \(4,\)"):
        mt.add(mt.Tensor(np.ones((2, 3))), np.ones(4))
    with pytest.raises(mt.ShapeError, match=r"einsum: 'ij,jk->ik' cannot combine shapes \(2, 3\) "
                                            r"and \(4, 5\)"):
        mt.einsum("ij,jk->ik", mt.Tensor(np.ones((2, 3))), np.ones((4, 5)))


# -- the target, and the call that was made ------------------------------------------

def _non_scalar(name=None):
    x = mt.Tensor(np.ones((4, 5)))
    with mt.Tape() as tape:
        y = mt.mul(x, 2.0, name=name)
    return tape, x, y


def test_a_non_scalar_target_states_its_shape_once():
    tape, x, y = _non_scalar()
    with pytest.raises(ValueError) as info:
        tape.gradient(y, x)
    assert str(info.value).startswith("gradient: the target has shape (4, 5), not a scalar;")


def test_backward_says_backward():
    tape, x, y = _non_scalar(name="y")
    with pytest.raises(ValueError, match=r"^backward: the target 'y' has shape \(4, 5\), not a scalar"):
        tape.backward(y)
    with pytest.raises(mt.ShapeError, match=r"^backward: seed has shape \(2,\) but the target 'y'"):
        tape.backward(y, seed=np.ones(2))
    with pytest.raises(ValueError, match=r"^backward: the target of shape \(4, 5\) was not recorded"):
        tape.backward(x * 1.0)


def test_loss_backward_points_to_the_tape():
    loss = mt.Tensor(np.ones(3)).sum()
    with pytest.raises(AttributeError, match=r"tape\.backward\(loss\).*tape\.gradient\(loss, params\)"):
        loss.backward()
    assert not hasattr(loss, "backward")


# -- fit --------------------------------------------------------------------------------

def _data(n=20):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, size=n)


@pytest.mark.parametrize("labels", [lambda y: y.astype(float), lambda y: y + 0.5])
def test_fit_with_float_labels_says_to_pass_integers(labels):
    x, y = _data()
    net = TwoLayerNet(5, 4, 3, seed=0)
    with pytest.raises(mt.InputError, match=r"fit: labels of dtype float64 given; class labels must "
                                            r"be integers 0\.\.2: pass y\.astype\(int\)"):
        fit(net, mt.optim.SGD(net.params, lr=0.1), x, labels(y), epochs=1, batch_size=5)


def test_fit_on_no_examples_is_a_clear_error():
    net = TwoLayerNet(5, 4, 3, seed=0)
    with pytest.raises(ValueError, match=r"fit: x holds no examples \(shape \(0, 5\)\)"):
        fit(net, mt.optim.SGD(net.params, lr=0.1), np.zeros((0, 5)), np.zeros(0, dtype=int),
            epochs=1, batch_size=5)


# -- each says what was given, and its hint works -------------------------------------

def test_unbroadcast_names_itself_and_refuses_swapped_shapes():
    # It named reshape; and (2, 3) from a (3, 2) G was laid out anew, silently
    for shape in ((3,), (2, 3)):
        with pytest.raises(mt.ShapeError, match=rf"unbroadcast: an input of shape {re.escape(str(shape))} "
                                                r"cannot have been broadcast to G's shape \(3, 2\)"):
            mt.unbroadcast(np.ones((3, 2)), shape)
    with pytest.raises(mt.ShapeError, match="unbroadcast: an input of shape"):
        mt.unbroadcast(mt.Tensor(np.ones((3, 2))), (2, 3))
    assert mt.unbroadcast(np.ones((4, 3, 2)), (3, 1)).tolist() == [[8.0]] * 3


def test_a_label_row_barely_off_shows_its_sum_to_the_digit():
    # "sums to 1" for a row refused for summing to 1 + 2e-6
    with pytest.raises(mt.InputError, match=r"row 0 sums to 1\.00000199"):
        mt.softmax_cross_entropy(mt.Tensor(np.ones((1, 2))), np.array([[0.5, 0.5 + 2e-6]]))


def test_mse_against_a_number_suggests_a_fix_that_works():
    # it suggested t.reshape((3,)), which a single number cannot take
    with pytest.raises(mt.ShapeError, match=r"pass np.full\(\(3,\), value\)"):
        mt.mse(mt.Tensor(np.ones(3)), 1.0)
    with pytest.raises(mt.ShapeError, match=r"reshape one, e.g. t.reshape\(\(3,\)\)"):
        mt.mse(mt.Tensor(np.ones(3)), np.ones((3, 1)))
    with pytest.raises(mt.ShapeError, match="pair each prediction with its own target"):
        mt.mse(mt.Tensor(np.ones(3)), np.ones(2))


def test_fit_names_what_its_test_set_was():
    net = TwoLayerNet(2, 3, 2, seed=0)
    x, y = np.ones((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(TypeError, match=r"test must be a pair \(x_test, y_test\), not a tuple of 1"):
        fit(net, mt.optim.SGD(net.params, 0.1), x, y, test=(x,), epochs=1, batch_size=2)


def test_detect_anomaly_without_its_call_says_to_add_it():
    with pytest.raises(TypeError, match=r"write @mt.detect_anomaly\(\) above train_step"):
        @mt.detect_anomaly
        def train_step():
            pass


def test_broadcast_to_names_the_target_shape_as_a_shape():
    # numpy's message went out as "inputs of shapes (3,) and (2,)", the target read as an input
    with pytest.raises(mt.ShapeError, match=r"broadcast_to: an input of shape \(3,\) cannot be "
                                            r"broadcast to shape \(2, 4\)"):
        mt.broadcast_to(mt.Tensor(np.ones(3)), (2, 4))


def test_astype_takes_a_list_as_numbers():
    # np.result_type read the list as the fields of a dtype
    assert mt.astype([1, 2], "float32").value.tolist() == [1.0, 2.0]
