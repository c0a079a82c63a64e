"""The derivation's chain of Jacobians: each factor by mt.jacobian equals its hand formula,
their product is the tape's dJ/dx, and the loss's Hessian in the logits is diag(ŷ) − ŷŷᵀ."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import microtape as mt
from models.jacobians import chain_costs, chain_product, factors, logit_hessian, tape_input_gradient
from models.two_layer import TwoLayerNet

ROOT = Path(__file__).resolve().parents[1]
DERIVATION = ROOT / "models/DERIVATION.md"
CASES = [((4, 3, 3), 0, 1), ((5, 6, 4), 1, 3), ((3, 2, 5), 2, 0)]


def example(sizes, seed):
    net = TwoLayerNet(*sizes, seed=seed)
    # Inputs of scale 2 put the hidden units off their linear middle, so σ' varies.
    return net, 2.0 * np.random.default_rng(seed).normal(size=sizes[0])


@pytest.mark.parametrize("sizes, seed, label", CASES)
def test_each_factor_equals_its_hand_formula(sizes, seed, label):
    net, x = example(sizes, seed)
    chain = factors(net, x, label)
    n_in, n_hidden, n_out = sizes
    assert [f.tape.shape for f in chain] == [(n_out,), (n_out, n_out), (n_out, n_hidden),
                                              (n_hidden, n_hidden), (n_hidden, n_in)]
    for factor in chain:
        assert factor.tape.shape == factor.hand.shape, factor.name
        np.testing.assert_allclose(factor.tape, factor.hand, rtol=0, atol=1e-12, err_msg=factor.name)


def test_the_hand_formulas_are_the_derivations_entries():
    # Written independently of models/jacobians.py, entry by entry as the index notation reads.
    net, x = example((3, 4, 3), 5)
    w1, b1, w2, b2 = (net.params[k].value for k in ("W1", "b1", "W2", "b2"))
    t = x @ w1 + b1
    h = 1 / (1 + np.exp(-t))
    v = h @ w2 + b2
    yhat = np.exp(v) / np.exp(v).sum()
    d = np.eye
    want = [
        np.array([-(a == 2) / yhat[a] for a in range(3)]),
        np.array([[yhat[a] * d(3)[a, b] - yhat[a] * yhat[b] for b in range(3)] for a in range(3)]),
        np.array([[w2[c, b] for c in range(4)] for b in range(3)]),
        np.array([[h[c] * (1 - h[c]) * d(4)[c, e] for e in range(4)] for c in range(4)]),
        np.array([[w1[k, e] for k in range(3)] for e in range(4)]),
    ]
    for factor, hand in zip(factors(net, x, 2), want):
        np.testing.assert_allclose(factor.tape, hand, rtol=0, atol=1e-12, err_msg=factor.name)


@pytest.mark.parametrize("sizes, seed, label", CASES)
def test_the_product_of_the_factors_is_the_tapes_input_gradient(sizes, seed, label):
    net, x = example(sizes, seed)
    product = chain_product(factors(net, x, label))
    tape = tape_input_gradient(net, x, label)
    np.testing.assert_allclose(product, tape, rtol=0, atol=1e-12)
    # And the tape's dJ/dx is the derivation's δ1 W1ᵀ, from plain numpy.
    p = {k: w.value for k, w in net.params.items()}
    h = 1 / (1 + np.exp(-(x @ p["W1"] + p["b1"])))
    v = h @ p["W2"] + p["b2"]
    delta2 = np.exp(v) / np.exp(v).sum() - np.eye(sizes[2])[label]
    np.testing.assert_allclose(tape, ((delta2 @ p["W2"].T) * h * (1 - h)) @ p["W1"].T,
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("sizes, seed, label", CASES)
def test_the_losss_hessian_in_the_logits_is_the_softmax_jacobian(sizes, seed, label):
    net, x = example(sizes, seed)
    hessian, hand = logit_hessian(net, x, label)
    assert hessian.shape == (sizes[2], sizes[2])
    np.testing.assert_allclose(hessian, hand, rtol=0, atol=1e-12)
    np.testing.assert_allclose(hessian, factors(net, x, label)[1].tape, rtol=0, atol=1e-12)


def test_chain_costs_count_the_products():
    # n_in 2, n_hidden 3, n_out 4: factors 1×4, 4×4, 4×3, 3×3, 3×2.
    costs = chain_costs(2, 3, 4)
    assert costs["Jacobians, multiplied from the input side"] == (4 + 16 + 12 + 9 + 6,
                                                                  (4 + 16 + 12 + 9) * 2)
    assert costs["Jacobians, multiplied from the loss side"] == (47, 16 + 12 + 9 + 6)
    assert costs["the tape's VJPs"] == (0, 4 + 12 + 9 + 6)
    batched = chain_costs(2, 3, 4, batch=5)
    assert batched["the tape's VJPs"] == (0, 5 * 31)
    assert batched["Jacobians, multiplied from the loss side"][0] == 1 * 20 + 25 * (16 + 12 + 9 + 6)


def test_the_command_prints_each_factor_and_its_difference():
    result = subprocess.run([sys.executable, "-m", "models.jacobians"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for title in ("∂J/∂ŷ_a = −y_a / ŷ_a", "∂ŷ_a/∂v_b = ŷ_a δ_ab − ŷ_a ŷ_b", "∂v_b/∂h_c = W2_cb",
                  "∂h_c/∂t_d = σ'(t_c) δ_cd", "∂t_d/∂x_k = W1_kd", "tape.gradient",
                  "mt.hessian", "diag(ŷ) − ŷŷᵀ"):
        assert title in out
    differences = [float(d) for d in re.findall(r"largest difference: (\S+)", out)]
    assert len(differences) == 7 and max(differences) < 1e-12
    assert "10,142,482,432" in out   # the cost table, from chain_costs


def test_the_derivation_has_the_chain_and_its_cost_table():
    text = DERIVATION.read_text()
    assert "## The chain of Jacobians" in text
    section = text.split("## The chain of Jacobians", 1)[1].split("\n## ", 1)[0]
    for entry in ("ŷ_a δ_ab − ŷ_a ŷ_b", "W2_cb", "σ'(t_c) δ_cd", "W1_kd", "−y_a / ŷ_a",
                  "python -m models.jacobians"):
        assert entry in section
    rows = re.findall(r"^\| (\d+) \| (.+?) \| ([\d,]+) \| ([\d,]+) \|$", section, re.M)
    assert len(rows) == 6, "the cost table has a row per way, for 1 example and for 32"
    ways = {"full Jacobians, multiplied from the input side": "Jacobians, multiplied from the input side",
            "full Jacobians, multiplied from the loss side": "Jacobians, multiplied from the loss side",
            "the tape's VJPs": "the tape's VJPs"}
    for n, way, entries, ops in rows:
        # The digits network: 64 inputs (8x8 images), 64 hidden units, 10 classes.
        want = chain_costs(64, 64, 10, batch=int(n))[ways[way]]
        assert (int(entries.replace(",", "")), int(ops.replace(",", ""))) == want, (n, way)


def test_the_digits_sizes_in_the_table_are_the_training_commands():
    from models.train import build_parser
    args = build_parser().parse_args([])
    assert (args.hidden, args.batch_size) == (64, 32)
    pytest.importorskip("sklearn")
    from models.data import load_digits
    x_train, y_train, _, _ = load_digits()
    assert (x_train.shape[1], int(y_train.max()) + 1) == (64, 10)


def test_the_command_takes_help_refuses_options_and_stops_quietly_when_its_reader_goes():
    # It took no arguments: --help printed the whole chain, and a reader that went
    # away (| head) left a BrokenPipeError traceback
    run = lambda *args: subprocess.run([sys.executable, "-m", "models.jacobians", *args],  # noqa: E731
                                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    helped = run("--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m models.jacobians")
    refused = run("--bogus")
    assert refused.returncode == 2 and "unrecognized arguments: --bogus" in refused.stderr
    with subprocess.Popen([sys.executable, "-m", "models.jacobians"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as reader:
        reader.stdout.readline()
        reader.stdout.close()  # as head does after its lines
        stderr = reader.stderr.read()
        assert reader.wait(timeout=120) in (0, 1) and "Traceback" not in stderr
