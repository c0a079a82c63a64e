"""What the numbers were measured on: CPU, Python, numpy's BLAS and its threads.

Ratios depend on all of these (a BLAS kernel chosen for another CPU, one
thread instead of two), so they are written next to every table.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

# Variables that change which BLAS kernel runs or how many threads it uses.
BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                  "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thread_pools() -> list[str]:
    """Every native thread pool loaded (numpy's BLAS, torch's OpenMP, ...), one line each."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl is not installed (pip install threadpoolctl)"]
    lines = []
    for pool in threadpool_info():
        extra = ", ".join(f"{key} {pool[key]}" for key in ("architecture", "threading_layer")
                          if pool.get(key))
        where = Path(pool["filepath"]).parent.parent.name  # the package that ships it
        lines.append(f"{pool['internal_api']} {pool.get('version') or ''} ({pool['prefix']}, "
                     f"from {where}; {extra + ', ' if extra else ''}{pool['num_threads']} threads)"
                     .replace("  ", " "))
    return lines


def numpy_blas() -> str:
    """numpy's BLAS as threadpoolctl sees it (the pool that lives inside numpy's package)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl missing)"
    for pool in threadpool_info():
        if pool["user_api"] == "blas" and "numpy" in pool["filepath"]:
            arch = f", {pool['architecture']} kernel" if pool.get("architecture") else ""
            return f"{pool['internal_api']} {pool.get('version')}{arch}, {pool['num_threads']} threads"
    return "not found by threadpoolctl"


def source_revision() -> str:
    """The commit measured, and whether microtape/ or models/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "microtape", "models"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + (" with uncommitted changes in microtape/ or models/" if dirty else "")


class CpuWatch:
    """How much CPU other processes (and the hypervisor) took while we measured.

    On a shared machine that is the first thing to know about a result: a
    neighbour busy on one of two cores stalls every library that runs two
    threads. Reads /proc/stat (Linux); elsewhere it reports nothing.
    """

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        ticks = [int(v) for v in fields] + [0] * 8
        hz = os.sysconf("SC_CLK_TCK")
        busy = (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / hz  # user nice system irq softirq
        steal = ticks[7] / hz
        own = os.times()
        return busy, steal, own.user + own.system, time.monotonic()

    def shares(self) -> tuple[float, float] | None:
        """(others, steal) since construction, as fractions of all CPUs' time; None off Linux."""
        end = self._read()
        if self._start is None or end is None:
            return None
        busy, steal, own, wall = (b - a for a, b in zip(self._start, end))
        capacity = max(wall, 1e-9) * (os.cpu_count() or 1)
        return max(busy - own, 0.0) / capacity, steal / capacity


def describe(versions: dict[str, str]) -> list[tuple[str, str]]:
    """(what, value) pairs for the record; ``versions`` names each contender's library version."""
    env = ", ".join(f"{v}={os.environ[v]}" for v in BLAS_VARIABLES if v in os.environ) or "none set"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", f"{cpu_model()}, {os.cpu_count()} logical CPUs ({platform.machine()})"),
        ("load average at start", " ".join(f"{x:.2f}" for x in load) if load else "unknown"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("numpy", f"{np.__version__}, BLAS: {numpy_blas()}"),
        ("BLAS environment", env),
        ("thread pools", "; ".join(thread_pools()) or "none found"),
        ("contenders", ", ".join(f"{name} {v}" for name, v in versions.items())),
        ("microtape source", source_revision()),
    ]
