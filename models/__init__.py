"""Networks built on the microtape tape (see models/two_layer.py)."""
