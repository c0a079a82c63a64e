"""Networks built on the microtape tape, their closed-form gradients, and training.

    from models import TwoLayerNet
    net = TwoLayerNet(64, 64, 10, seed=0)
    with mt.Tape() as tape:
        loss = net.loss(x, labels)
    grads = tape.gradient(loss, net.params)   # dict: W1, b1, W2, b2

``models/two_layer.py`` is the derivation's network, ``by_hand.py`` its
gradients by hand, ``mlp.py`` the same idea at any depth, ``data.py`` the
data sets, ``fit.py`` the training loop and ``train.py`` the command
``python -m models.train``.
"""

import microtape  # noqa: F401  first: its import error says what to do when numpy is missing

from .checkpoint import CheckpointError
from .by_hand import closed_form_gradients
from .fit import History, TrainingError, fit
from .mlp import MLP
from .two_layer import TwoLayerNet

__all__ = ["TwoLayerNet", "MLP", "closed_form_gradients", "fit", "History", "TrainingError",
           "CheckpointError"]
