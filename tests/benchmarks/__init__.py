"""Benchmarks: one SGD step of the derivation's network, timed against numpy.

Run with ``make bench`` (``python -m tests.benchmarks.bench``). Nothing here
is collected by pytest; ``tests/test_bench_smoke.py`` runs a quick round.
"""
