"""What to tell someone whose Python lacks a package: often, that they are in the wrong Python.

``make`` installs everything into the project's ``.venv``; a fresh shell's
``python`` is another interpreter. When the missing package is in ``.venv``,
the fix is to activate it, not to install anything. Standard library only:
this runs when numpy itself may be missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

_VENV = Path(__file__).resolve().parent.parent / ".venv"


def missing_package(package: str, install: str) -> str:
    """The advice for an ImportError of ``package`` (its import name).

    ``install`` is the pip command that would install it (when it is not
    already in the project's virtual environment).
    """
    if _in_project_venv(package) and not _running_in(_VENV):
        return (f"{package} is installed in this project's virtual environment, but this is "
                f"{sys.executable}: activate the virtual environment (. .venv/bin/activate) "
                f"and run the command again, or use the make targets (see the README)")
    return f"{package} is not installed: {install}"


def _in_project_venv(package: str) -> bool:
    for site in _VENV.glob("lib/python*/site-packages"):
        if (site / package).is_dir() or (site / f"{package}.py").is_file():
            return True
    return False


def _running_in(venv: Path) -> bool:
    try:
        return Path(sys.prefix).resolve() == venv.resolve()
    except OSError:
        return False
