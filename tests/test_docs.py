"""The documents the project cites are in the repository, and the licence matches pyproject."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".git", ".venv", "out", "build", "__pycache__", ".pytest_cache", ".hypothesis"}
# Files that commands write when they run, not documents in the repository.
WRITTEN = {"out/bench.md", "bench.md", "out/bench-openblas-own-kernel.md"}
MD_PATH = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w-]+\.md)\b")


def project_files():
    for path in sorted(ROOT.rglob("*")):
        parts = set(path.relative_to(ROOT).parts)
        # Hidden folders (.venv, .venv-oldest, .git, ...) hold other projects' files.
        if path.is_file() and not parts & SKIP and not any(p.endswith(".egg-info") or p.startswith(".")
                                                              for p in parts) \
                and path.suffix in {".py", ".md", ".toml", ".ipynb", ".txt", ""}:
            yield path


def test_every_cited_markdown_file_exists():
    cited = {}
    for path in project_files():
        for name in MD_PATH.findall(path.read_text(errors="replace")):
            if name not in WRITTEN:
                cited.setdefault(name, set()).add(path)
    assert "models/DERIVATION.md" in cited   # the scan sees the citations it is meant to check
    # A path resolves from the repository's root, or from the folder of the file citing it.
    missing = {name: sorted(str(p.relative_to(ROOT)) for p in where) for name, where in cited.items()
               if not (ROOT / name).is_file() and not any((p.parent / name).is_file() for p in where)}
    assert not missing, f"cited but not in the repository (path from the repository root): {missing}"


def test_the_derivation_has_what_the_code_cites_it_for():
    text = (ROOT / "models/DERIVATION.md").read_text()
    for formula in ["delta2 = Ŷ − Y", "dW2    = Hᵀ delta2", "column sums of delta2",
                    "delta1 = (delta2 W2ᵀ) ∘ H ∘ (1 − H)", "dW1    = Xᵀ delta1",
                    "dX     = delta1 W1ᵀ",
                    "dJ/dv = ŷ − y", "ŷ_a [a = b] − ŷ_a ŷ_b", "dA = G Bᵀ", "dB = Aᵀ G",
                    "dA = G ∘ S ∘ (1 − S)", "unbroadcast", "dv = G (ŷ − y)", "divided by `N`"]:
        assert formula in text, formula


def test_the_license_file_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the microtape authors" in text


def test_the_training_command_quotes_the_accuracy_the_readme_measured():
    import models.train

    measured = re.search(r"default run reaches \*\*([\d.]+%)", (ROOT / "README.md").read_text())
    assert measured, "the README no longer states the measured accuracy"
    assert measured.group(1) in models.train.__doc__
    assert not re.search(r"about [\d.]+%", models.train.__doc__)


def test_the_tensor_docstring_names_what_records_an_op():
    import microtape.tensor
    from microtape.primitive import Primitive

    doc = microtape.tensor.__doc__
    assert "Primitive.__call__" in doc and "ops.py`` do the recording" not in doc
    # ... and that is where a tape's _record is called.
    assert "_record(" in inspect.getsource(Primitive.__call__)
