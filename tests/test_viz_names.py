"""One name per tensor: the drawing, the step captions and the step equations agree.

The names come from one place, ``microtape.naming``; these tests read them
out of each view and hold the views to each other on the networks a user
meets first.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import microtape as mt
from models import MLP, TwoLayerNet
from viz.steps import backward_walk
from viz.tapeview import TapeView

CAPTION_GRADIENT = re.compile(r"d(\w+)/d(\w+)")         # dJ/dW1
WORD = re.compile(r"[A-Za-zŷ_][A-Za-z0-9_]*")   # names are ASCII identifiers
# What the derivation writes besides names: its deltas, N, the label rows y, ŷ.
DERIVATION = re.compile(r"delta\d+|N|y|ŷ|column|sums|of|copied|to|every|element")


def recorded(net: MLP, loss_name: str = "J", mse: bool = False):
    """A batch of 4 through ``net`` on a tape, the loss's gradients set."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, net.n_in))
    with mt.Tape() as tape:
        if mse:   # a mean squared error built from ops
            targets = rng.normal(size=(4, net.n_out))
            loss = mt.mean((net(x) - targets) ** 2, name=loss_name)
        else:
            loss = net.loss(x, np.arange(4) % net.n_out, name=loss_name)
    tape.backward(loss)
    return tape, loss


def read_names(view: TapeView) -> tuple[set[str], list[tuple[str, list[str], list[str]]]]:
    """The drawing's names, and per step: the target the caption differentiates, the
    tensors its gradients name, and the equation's words."""
    walk = backward_walk(view)
    steps = []
    for caption, equation in zip(walk.captions[1:-1], walk.equations[1:-1]):
        pairs = CAPTION_GRADIENT.findall(caption)
        assert pairs, caption
        targets = {of for of, _ in pairs}
        assert len(targets) == 1, caption
        steps.append((targets.pop(), [by for _, by in pairs], WORD.findall(equation)))
    return set(view.drawn_names().values()), steps


def assert_views_agree(view: TapeView) -> None:
    drawn, steps = read_names(view)
    target = view.info(view.target).name
    for of, tensors, words in steps:
        assert of == target
        assert set(tensors) <= drawn, (tensors, drawn)
        for word in words:
            named = word in drawn or word[1:] in drawn or word.removeprefix("d_") in drawn
            assert named or DERIVATION.fullmatch(word), (word, words, drawn)


NETWORKS = {
    "TwoLayerNet": lambda: TwoLayerNet(64, 8, 10, seed=0),
    "MLP([64, 32, 16, 10])": lambda: MLP([64, 32, 16, 10], seed=0),
    "tanh MLP, squared error": lambda: MLP([5, 4, 3], activation="tanh", seed=0),
}


@pytest.mark.parametrize("which", NETWORKS)
def test_the_drawing_the_captions_and_the_equations_say_the_same_names(which):
    net = NETWORKS[which]()
    tape, loss = recorded(net, mse="squared" in which)
    view = TapeView(tape, loss, net.params)
    assert_views_agree(view)
    drawn = set(view.drawn_names().values())
    layers = len(net.sizes) - 1
    if isinstance(net, TwoLayerNet):
        assert {"x", "t", "h", "v", "J"} <= drawn
    else:
        assert {"x", "v", "J"} | {f"{p}{i}" for i in range(1, layers) for p in "th"} <= drawn


def test_the_old_op_names_would_fail_the_check():
    # The measure has teeth: a drawing that named a tensor after its op
    # (tanhW2, add2) leaves words in the equations it cannot place.
    net = MLP([64, 32, 16, 10], seed=0)
    tape, loss = recorded(net)
    view = TapeView(tape, loss, net.params)
    view.tensors[id(tape.nodes[2].output)].name = "sigmoid"   # h1, as it was called
    with pytest.raises(AssertionError):
        assert_views_agree(view)


def test_a_loss_named_L_is_differentiated_as_L_in_every_caption():
    net = MLP([64, 32, 16, 10], seed=0)
    tape, loss = recorded(net, loss_name="L")
    view = TapeView(tape, loss, net.params)
    walk = backward_walk(view)
    assert "seed dL/dL = 1" in walk.captions[0]
    assert "takes the seed G = dL/dL and sends back dL/dv" in walk.captions[1]
    assert all("dJ" not in c for c in walk.captions)
    drawn, steps = read_names(view)
    assert {of for of, _, _ in steps} == {"L"} and "L" in drawn and "J" not in drawn


def test_a_loss_named_L_is_L_in_the_equations_too():
    net = MLP([5, 4, 3], activation="tanh", seed=0)
    tape, loss = recorded(net, loss_name="L", mse=True)
    assert_views_agree(TapeView(tape, loss, net.params))


def test_names_given_to_the_step_page_reach_its_equations():
    w = mt.Tensor(np.arange(3.0), name="w")
    data = np.array([1.0, 2.0, 4.0])
    with mt.Tape() as tape:
        loss = mt.sum(mt.tanh(w * data), name="L")
    tape.backward(loss)
    view = TapeView(tape, loss, [w], names={"data": data})
    walk = backward_walk(view)
    assert "data" in view.drawn_names().values()
    assert walk.equations[-2] == "dw = dmul ∘ data"      # not the unnamed x
    assert_views_agree(view)


# -- the closed form says the same names: its source and its equations -----------------

ASSIGNED = re.compile(r"^    (\w+) = ", re.M)
GRADIENT_IN_CODE = re.compile(r"\bd_(\w+?)(?:_\d+)?\b")


def closed_form_names(tape, loss, params) -> tuple[set[str], set[str], list[str]]:
    """The closed form's forward names, the tensors its gradients are named for, its equation words."""
    cf = tape.closed_form(loss, params)
    forward = cf.source.split("# backward pass")[0]
    assigned = set(ASSIGNED.findall(forward)) | set(cf.inputs)
    grads = set(GRADIENT_IN_CODE.findall(cf.source))
    words = WORD.findall(cf.equations)
    return assigned, grads, words


@pytest.mark.parametrize("which", NETWORKS)
def test_the_closed_form_names_every_tensor_as_the_drawing_does(which):
    net = NETWORKS[which]()
    tape, loss = recorded(net, mse="squared" in which)
    view = TapeView(tape, loss, net.params)
    drawn = set(view.drawn_names().values())
    assigned, grads, words = closed_form_names(tape, loss, net.params)
    # Every tensor the drawing shows is computed or passed under the same name,
    # and no name in the code is one the drawing does not show.
    tensors = {view.info(t).name for t in (n.output for n in view.nodes)}
    assert tensors <= assigned, tensors - assigned
    code_only = assigned - drawn
    assert all(n in {"rows", "top", "z", "e", "rest", "yhat"} for n in code_only), code_only
    assert grads <= drawn, grads - drawn           # d_<name>: a drawn tensor's gradient
    for word in words:
        assert word[1:] in drawn or word in drawn or DERIVATION.fullmatch(word), (word, drawn)


def test_a_loss_named_L_is_d_L_in_the_code_and_dL_nowhere_else():
    net = MLP([5, 4, 3], activation="tanh", seed=0)
    tape, loss = recorded(net, loss_name="L", mse=True)
    cf = tape.closed_form(loss, net.params)
    assert "d_L = " in cf.source and "d_J" not in cf.source
    assert "dJ" not in cf.equations
    view = TapeView(tape, loss, net.params)
    assert all("dJ" not in c for c in backward_walk(view).captions)
