"""The label check for models/: the loss's own, with errors named for the call the user wrote.

``fit`` and ``closed_form_gradients`` accept exactly the labels
``mt.softmax_cross_entropy`` accepts (class indices, or rows of
non-negative numbers summing to 1), so they ask the loss's check rather
than keep copies of its rules. Its errors (``mt.InputError`` for a bad
value or dtype, ``mt.ShapeError`` for a bad shape) are raised again with
the same type and text, named for the caller instead of the loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from microtape.errors import InputError, ShapeError
from microtape.validation import check_labels as _loss_check  # the one label check

__all__ = ["check_labels"]

_LOSS = "softmax_cross_entropy: "


def check_labels(labels: Any, shape: tuple[int, ...], caller: str) -> np.ndarray:
    """``labels`` as an array fit for outputs of ``shape`` (C,) or (N, C), or raise.

    Class indices must have ``shape[:-1]`` and lie in 0..C−1; label rows
    must have ``shape``, be finite and non-negative and sum to 1.
    """
    try:
        return _loss_check(labels, shape)
    except (InputError, ShapeError) as e:
        text = str(e)
        text = text[len(_LOSS):] if text.startswith(_LOSS) else text
        raise type(e)(f"{caller}: {text}") from None
