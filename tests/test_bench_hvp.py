"""The benchmark's Hessian-vector product: it checks before it times, and says what it left out.

No timing is asserted (the machine is shared). PyTorch and JAX are not needed:
their rows say how to install them, and the check that holds them to
microtape runs on a stand-in peer.
"""

import importlib.util
import sys

import numpy as np
import pytest

from tests.benchmarks import agreement, bench, hvp, hvp_peers
from tests.benchmarks.timing import Timing

QUICK = ["--quick", "--sizes", "tiny", "--hvp-sizes", "tiny", "--rounds", "1", "--block-ms", "1",
         "--contenders", "numpy,microtape", "--chains", "100", "--memory-size", "none"]


def section(text: str) -> str:
    return text.split("## Hessian-vector product")[1].split("\n## ")[0]


def test_quick_run_times_hvp_against_value_and_grad_without_peers(tmp_path):
    out = tmp_path / "bench.md"
    assert bench.main([*QUICK, "--out", str(out)]) == 0
    text = section(out.read_text(encoding="utf-8"))
    rows = [line for line in text.splitlines() if line.startswith("| tiny (20, 10, 5, 10) |")]
    assert [row.split("|")[2].strip() for row in rows] == ["microtape value_and_grad", "microtape hvp"]
    cells = rows[1].split("|")
    assert float(cells[5].strip().rstrip("x")) > 0             # over value_and_grad
    assert float(cells[7]) <= hvp.DIFFERENCE_TOLERANCE          # against differences of the gradient
    assert "PyTorch and JAX are left out with --quick" in text


def test_hvp_is_left_out_for_sizes_not_asked_for():
    options, _ = bench.parse(["--quick", "--sizes", "tiny,medium"])
    assert options.hvp_sizes == ["medium"] and not options.hvp_peers
    options, _ = bench.parse(["--hvp-sizes", "none"])
    assert options.hvp_sizes == [] and options.hvp_peers


def test_a_peer_that_cannot_be_imported_gets_a_row_saying_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails, installed or not
    monkeypatch.setitem(sys.modules, "jax", None)
    (checked,) = hvp.check(["tiny"])
    assert checked.missing["torch"] == "torch not installed; `make bench-peers` installs it"
    assert set(checked.missing) == set(hvp.PEERS) and set(checked.calls) == {"value_and_grad",
                                                                             "microtape"}
    (result,) = hvp.measure([checked], rounds=1, block_seconds=1e-3)
    md, _ = hvp.section([result], threads=2)
    assert ("| tiny (20, 10, 5, 10) | PyTorch double backward | not measured (torch not "
            "installed; `make bench-peers` installs it) |") in "\n".join(md)


class _Scaled:
    """A stand-in peer whose H·v is microtape's times ``factor``."""

    factor = 1.0

    def __init__(self, p, threads):
        self.answer = tuple(h * self.factor for h in hvp.Microtape(p).hvp())

    def run(self):
        return self.answer

    def hvp(self):
        return self.answer


def test_a_peer_whose_hvp_differs_is_refused_before_timing(monkeypatch):
    class Agreeing(_Scaled):
        pass

    class Wrong(_Scaled):
        factor = 1.0 + 1e-6

    monkeypatch.setattr(hvp, "PEERS", {"right": ("Right", "numpy", Agreeing)})
    (checked,) = hvp.check(["tiny"])
    assert checked.errors["right"] == 0 and "right" in checked.calls
    monkeypatch.setattr(hvp, "PEERS", {"wrong": ("Wrong peer", "numpy", Wrong)})
    with pytest.raises(agreement.DisagreementError, match=r"hvp: Wrong peer at tiny: H·v differs "
                                                          r"from microtape's"):
        hvp.check(["tiny"])


def test_microtape_is_held_to_differences_of_its_gradient(monkeypatch):
    monkeypatch.setattr(hvp.Microtape, "hvp", lambda self: tuple(
        h * 1.001 for h in hvp.mt.hvp(self.f, (self.p.W1, self.p.W2), (self.p.v1, self.p.v2))[1]))
    with pytest.raises(agreement.DisagreementError, match="central differences of its gradient"):
        hvp.check(["tiny"], peers=False)


def test_the_goals_read_hvp_over_value_and_grad_and_against_pytorch_eager():
    def timing(median):
        return Timing(per_call=[median], calls_per_block=1)

    res = hvp.HvpResult("medium", {"value_and_grad": timing(1.0), "microtape": timing(2.9),
                                   "torch": timing(4.0), "torch.func": timing(3.5)},
                        {"microtape": 1e-9, "torch": 1e-16, "torch.func": 1e-16},
                        {"jax": "jax not installed; `make bench-peers` installs it",
                         "jax-jit": "jax not installed; `make bench-peers` installs it"})
    md, targets = hvp.section([res], threads=2)
    assert targets == [["hvp over value_and_grad, medium", "≤ 3.0x", "2.90x", "met"],
                       ["hvp vs PyTorch's eager H·v, medium", "< 1x", "0.83x", "met"]]
    (row,) = [line for line in md if "| microtape hvp |" in line]
    assert "| 2.90x | ≤ 3.0x met | 1.0e-09 |" in row
    small = hvp.HvpResult("small", res.timings, res.errors, res.missing)
    assert hvp.section([small], threads=2)[1] == []  # the goals are the medium size's


@pytest.mark.skipif(importlib.util.find_spec("torch") is None or importlib.util.find_spec("jax") is None,
                    reason="PyTorch or JAX is not installed (make bench-peers)")
def test_the_real_peers_agree_with_microtape_at_the_tiny_size():
    (checked,) = hvp.check(["tiny"])
    assert not checked.missing
    for name in hvp.PEERS:
        assert checked.errors[name] <= hvp.TOLERANCE
    np.testing.assert_allclose(hvp_peers.TorchFunc(hvp.make("tiny"), 1).hvp()[0],
                               hvp.Microtape(hvp.make("tiny")).hvp()[0], rtol=1e-10)
