"""The core's shape: imports that run one way, the public target lookup."""

import numpy as np
import pytest

import microtape as mt


# -- the backward pass's target lookup -----------------------------------------------

def _recorded():
    a = mt.Tensor(np.arange(3.0), name="a")
    with mt.Tape() as tape:
        b = mt.mul(a, 2.0, name="b")
        c = mt.sum(b, name="c")
    return tape, a, b, c


def test_index_of_is_one_past_the_node_that_made_the_target():
    tape, a, b, c = _recorded()
    assert tape.index_of(c) == len(tape) == 2
    assert tape.index_of(b) == 1
    assert tape.index_of(a, sources=[a]) == 0  # a source: no op lies between


def test_index_of_names_the_caller_and_the_target_it_cannot_find():
    tape, a, b, c = _recorded()
    stray = mt.Tensor(np.ones(2), name="stray")
    with pytest.raises(ValueError, match=r"^viz: the target 'stray' was not recorded on this tape; "
                                         r"compute it inside 'with tape:'"):
        tape.index_of(stray, caller="viz")
    with pytest.raises(TypeError, match=r"^gradient: the target must be a Tensor, not ndarray"):
        tape.index_of(np.ones(2))
