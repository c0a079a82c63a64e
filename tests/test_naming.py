"""The one naming view of a tape: precedence, identifiers, ancestors and the target lookup."""

import keyword

import numpy as np
import pytest

import microtape as mt
from microtape.naming import _RESERVED, TapeNames, ancestors, identifier, index_of


def _two_layer():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3))
    W1 = mt.Tensor(rng.normal(size=(3, 5)), name="W1")
    b1 = mt.Tensor(np.zeros(5), name="b1")
    labels = np.array([0, 1, 2, 1])
    with mt.Tape() as tape:
        t = mt.add(mt.matmul(mt.Tensor(x), W1), b1, name="t")
        J = mt.softmax_cross_entropy(t, labels)
    return tape, W1, b1, t, J, labels


def test_own_names_then_templates_then_parameter_words():
    tape, W1, b1, t, J, labels = _two_layer()
    view = TapeNames(tape.nodes, J)
    xW1 = tape.nodes[0].output
    assert [view[x] for x in (tape.nodes[0].inputs[0], W1, xW1, b1, t, labels, J)] == [
        "x", "W1", "xW1", "b1", "t", "labels", "softmax_cross_entropy"]
    assert view.of(W1) == "W1" and view.grad(W1) == "d_W1"
    assert [view[x] for x in view.leaves] == ["x", "W1", "b1", "labels"]


def test_user_names_come_after_own_names_and_the_target_keeps_its_name():
    tape, W1, b1, t, J, labels = _two_layer()
    J.name = "L"
    view = TapeNames(tape.nodes, J, names={"y": labels, "ignored": W1})
    assert view[labels] == "y" and view[W1] == "W1"
    assert view.grad(J) == "d_L"


def test_every_name_is_an_identifier_of_its_own():
    a = mt.Tensor(np.ones(2), name="lambda")
    b = mt.Tensor(np.ones(2), name="np")
    c = mt.Tensor(np.ones(2), name="bad\nname")
    d = mt.Tensor(np.ones(2), name="self")
    with mt.Tape() as tape:
        s = mt.sum(a * b * c * d, name="lr")
    view = TapeNames(tape.nodes, s)
    names = [view[x] for x in (a, b, c, d, s)]
    assert all(n.isidentifier() and not keyword.iskeyword(n) for n in names)
    assert len(set(names)) == len(names)
    assert not {"np", "self", "lr", "sum"} & set(names)
    assert identifier("2x") == "x2x" and identifier("print") == "print_"


def test_taken_names_are_numbered():
    a = mt.Tensor(np.ones(2), name="w")
    b = mt.Tensor(np.ones(2), name="w")
    with mt.Tape() as tape:
        s = mt.sum(mt.tanh(a) * mt.tanh(b))
    view = TapeNames(tape.nodes, s)
    assert [view[a], view[b]] == ["w", "w2"]
    assert [view[n.output] for n in tape.nodes[:2]] == ["tanh", "tanh2"]


def test_a_name_the_user_gave_exactly_wins_over_a_number_given_to_another():
    # Named w, w and w2: the second w was numbered w2 and the user's w2 became w22
    a, b, c = (mt.Tensor(np.ones(2), name=n) for n in ("w", "w", "w2"))
    with mt.Tape() as tape:
        s = mt.sum(a * b * c)
    view = TapeNames(tape.nodes, s)
    assert [view[a], view[b], view[c]] == ["w", "w3", "w2"]
    assert tape.closed_form(s, [a, b, c]).inputs == ("w", "w3", "w2")


def test_letters_beyond_ascii_are_kept_where_python_reads_them_as_written():
    # A teacher's α was written _; ﬁ Python reads as fi, and ² as 2, so those go
    assert [identifier(n) for n in ("α", "σ_1", "é", "ﬁ", "x²", "α β", "٣")] == [
        "α", "σ_1", "é", "_", "x_", "α_β", "x٣"]
    alpha, beta = mt.Tensor(np.array([2.0]), name="α"), mt.Tensor(np.array([3.0]), name="β")
    with mt.Tape() as tape:
        s = mt.sum(alpha * beta)
    cf = tape.closed_form(s, [alpha, beta])
    assert cf.inputs == ("α", "β") and "dα = " in cf.equations
    assert cf()[1][0] == 3.0


def test_index_arrays_get_names_and_ancestors_skip_what_the_target_does_not_need():
    w = mt.Tensor(np.arange(6.0), name="w")
    idx = np.array([0, 2])
    with mt.Tape() as tape:
        unused = mt.exp(w)
        y = mt.sum(w[idx, ] * 2.0)
    assert ancestors(tape.nodes, y) == tape.nodes[1:]
    view = TapeNames(tape.nodes, y)
    assert unused not in view and view[idx] == "index"


def test_the_target_lookup_is_the_tapes():
    tape, W1, b1, t, J, labels = _two_layer()
    assert index_of(tape.nodes, t) == tape.index_of(t) == 2
    with pytest.raises(ValueError, match="was not recorded on this tape"):
        index_of(tape.nodes, mt.Tensor(1.0), caller="viz")
    assert ancestors(tape.nodes, W1, end=index_of(tape.nodes, W1, sources=[W1])) == []


@pytest.mark.parametrize("taken", sorted(_RESERVED))
def test_a_tensor_named_as_a_global_of_the_generated_code_leaves_that_global_alone(taken):
    # The code calls np and _check_labels: a parameter, an intermediate or labels of one
    # of those names would shadow it, so the code called an array
    rng = np.random.default_rng(0)
    W = mt.Tensor(rng.normal(size=(4, 3)), name=taken)
    labels = rng.dirichlet(np.ones(3), size=4)  # soft labels: the code checks their rows
    with mt.Tape() as tape:
        h = mt.mul(W, 2.0, name=taken)
        loss = mt.softmax_cross_entropy(mt.tanh(h), labels)
    cf = tape.closed_form(loss, W, names={taken: labels})
    assert not _RESERVED & set(cf.inputs)
    new_W, new_labels = rng.normal(size=(4, 3)), rng.dirichlet(np.ones(3), size=4)
    by_name = dict(zip(cf.inputs, (new_W, new_labels)))  # W is named first, then the labels
    value, grad = cf(**by_name)
    want_value, want_grad = mt.value_and_grad(
        lambda w, y: mt.softmax_cross_entropy(mt.tanh(w * 2.0), y))(new_W, new_labels)
    assert np.allclose(value, want_value) and np.allclose(grad, want_grad)

    def loss(w, y):
        return mt.softmax_cross_entropy(mt.tanh(mt.mul(w, 2.0, name=taken)), y)
    compiled = mt.value_and_grad(loss, compile=True)
    compiled(W, labels)
    value, grad = compiled(mt.Tensor(new_W, name=taken), new_labels)
    assert np.allclose(value, want_value) and np.allclose(grad, want_grad)
