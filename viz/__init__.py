"""Drawings of a tape: the computation graph with its values and gradients."""
