"""Data sets for training, none downloaded at run time.

``load_digits``: the 8x8 handwritten digits that ship inside scikit-learn
(1,797 images, 10 classes). ``spirals``: the interleaved-spirals toy problem,
made with numpy. Both return float64 features and int64 class indices.
"""

from __future__ import annotations

import numpy as np

from microtape._install import missing_package
from microtape.validation import check_count

__all__ = ["load_digits", "spirals", "stratified_split"]

_EXTRA_HINT = "pip install 'microtape[examples]'"


def load_digits(test_fraction: float = 0.2, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from scikit-learn's bundled digits.

    Each row of x is an 8x8 image flattened to 64 features, scaled from the
    0..16 ink levels to [0, 1]; y holds class indices 0..9. The split is
    stratified (every digit in the same proportion on both sides) and fixed
    by ``seed``.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ImportError("load_digits needs scikit-learn, which ships the digits data. "
                          + missing_package("sklearn", _EXTRA_HINT)) from None
    bunch = sklearn_digits()
    x = bunch.data.astype(np.float64) / 16.0
    y = bunch.target.astype(np.int64)
    return stratified_split(x, y, test_fraction, seed)


def spirals(n_per_class: int = 100, n_classes: int = 3, seed: int = 0,
            noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): ``n_classes`` spiral arms in the plane, ``n_per_class`` points each.

    Arm k starts at the origin and winds out to radius 1, turning through
    4 radians, rotated by 2πk/n_classes; ``noise`` jitters each point's
    angle (radians, normal). No straight line separates the arms, so a
    network needs its hidden layer. x has shape (n_classes·n_per_class, 2).
    """
    check_count("spirals", "n_per_class", n_per_class, 1)
    check_count("spirals", "n_classes", n_classes, 1)
    rng = np.random.default_rng(seed)
    radius = np.tile(np.linspace(0.0, 1.0, n_per_class), n_classes)
    arm = np.repeat(np.arange(n_classes), n_per_class)
    angle = 2 * np.pi * arm / n_classes + 4.0 * radius + noise * rng.standard_normal(radius.size)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return x, arm.astype(np.int64)


def stratified_split(x: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) with each class split in the same proportion.

    From each class, ``round(test_fraction · count)`` examples chosen by
    ``np.random.default_rng(seed)`` go to the test side; both sides keep the
    original order of the examples.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    if np.ndim(y) != 1:
        raise ValueError(f"stratified_split: y must hold one class index per example, shape "
                         f"(N,), not shape {np.shape(y)}; for one-hot rows pass y.argmax(axis=1)")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)} labels")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        n_test = int(round(test_fraction * len(members)))
        is_test[rng.choice(members, size=n_test, replace=False)] = True
    for side, chosen in (("training", ~is_test), ("test", is_test)):
        if not chosen.any():  # each class rounds to all or none of its few examples
            raise ValueError(f"stratified_split: test_fraction {test_fraction} leaves the {side} "
                             f"side empty ({len(y)} examples, each class rounded to whole "
                             f"examples); choose a fraction nearer 0.5")
    return x[~is_test], y[~is_test], x[is_test], y[is_test]
