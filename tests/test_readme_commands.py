"""Every command the README shows works as printed, in a fresh shell, after make demo.

Each command runs in a copy of the repository (sharing this one's .venv), in
``bash`` with a bare environment whose PATH leaves the virtual environment
out, as a new terminal would. Commands that start with ``python`` or
``microtape-train`` run after ``. .venv/bin/activate``, as the README says;
``make`` commands run as they are. Afterwards, ``git status`` in the copy
must be clean: whatever the commands wrote is in .gitignore.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = ROOT / ".venv"
STAMP = VENV / ".installed-dev"

# Not run here, with the reason.
NOT_RUN = {
    "make test": "it is this test suite",
    "make bench": "a full benchmark takes minutes; make bench ARGS=--quick runs the same code",
    "make notebook": "it starts JupyterLab, a server that runs until it is stopped",
    ". .venv/bin/activate": "it prefixes every python command below",
}

pytestmark = pytest.mark.slow


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].split(" #")[0].strip()
            if command and command not in commands:
                commands.append(command)
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_the_commands_this_file_knows():
    # A new command in the README needs a look here (and one below, run as printed).
    assert set(COMMANDS) >= set(NOT_RUN)
    assert any(c.startswith("python -m viz") for c in COMMANDS)
    assert "make bench ARGS=--quick" in COMMANDS and 'make train ARGS="--optimizer adam"' in COMMANDS


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A copy of the repository, committed to git, sharing the installed .venv."""
    if not (VENV / "bin" / "python").exists() or shutil.which("git") is None:
        pytest.skip("needs the ./.venv that make creates, and git")
    if not STAMP.exists() or STAMP.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        # make would reinstall the project from the copy; make test refreshes it first.
        pytest.skip(".venv is older than pyproject.toml: run make test")
    where = tmp_path_factory.mktemp("clone") / "microtape"
    ignore = shutil.ignore_patterns(".git", ".venv", "out", "steps", "graph.*", "__pycache__",
                                    ".pytest_cache", ".hypothesis", "*.egg-info", "build")
    shutil.copytree(ROOT, where, ignore=ignore)   # copy2: pyproject keeps its time
    (where / ".venv").symlink_to(VENV)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=where, check=True)
    subprocess.run([*git, "add", "-A"], cwd=where, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=where, check=True)
    return where


def fresh_shell_env() -> dict[str, str]:
    """A new terminal's environment: no VIRTUAL_ENV, and PATH without any virtual environment."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep)
            if p and not (Path(p).parent / "pyvenv.cfg").exists()]
    env = {"PATH": os.pathsep.join(path or ["/usr/bin", "/bin"]), "HOME": os.environ.get("HOME", "/"),
           "LANG": "C.UTF-8", "TERM": "dumb"}
    return env


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    script = command if command.startswith("make") else f". .venv/bin/activate && {command}"
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=fresh_shell_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in NOT_RUN])
def test_readme_command_works_as_printed_in_a_fresh_shell(clone, command):
    result = run(command, clone)
    assert result.returncode == 0, (f"{command!r} failed:\n{result.stdout[-2000:]}\n"
                                    f"{result.stderr[-3000:]}")
    out = result.stdout
    trains = ("python -m models.train", "microtape-train", "make demo", "make train")
    if command.startswith(trains):
        assert "test accuracy:" in out and (clone / "out" / "params.npz").exists()
        if "adam" in command:
            assert "Adam(" in out
    elif command.startswith("make bench"):
        assert (clone / "out" / "bench.md").exists() and "issue" not in out.lower()
    elif "--check" in command:
        assert re.search(r"finite-difference check: the tape's gradients agree for every leaf", out)
    elif "--steps" in command or command == "make steps":
        assert (clone / "steps" / "index.html").exists()
    elif command in ("python -m viz", "make graph"):
        assert (clone / "graph.svg").exists()
    elif command in ("python -m models.jacobians", "make jacobians"):
        assert out.count("largest difference:") == 7
    # Whatever it wrote is ignored by git.
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", f"{command!r} left files git does not ignore:\n{status}"


def test_python_without_the_venv_says_to_activate_it(clone):
    """The interpreter the venv was made from lacks the packages: the error says what to do."""
    base = getattr(sys, "_base_executable", None)
    if not base or sys.prefix == sys.base_prefix:
        pytest.skip("not running in a virtual environment")
    for command in (["-m", "viz"], ["-m", "models.train"], ["-c", "import microtape"]):
        # -S -s: no site-packages at all, as a python without the project's packages
        result = subprocess.run([base, "-S", "-s", *command], cwd=clone, env=fresh_shell_env(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert "activate the virtual environment (. .venv/bin/activate)" in last, result.stderr


def test_the_install_hint_tells_apart_wrong_python_and_missing_package(tmp_path, monkeypatch):
    import microtape._install as install

    site = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages"
    (site / "graphviz").mkdir(parents=True)
    monkeypatch.setattr(install, "_VENV", tmp_path / ".venv")
    hint = install.missing_package("graphviz", "pip install 'microtape[viz]'")
    assert "installed in this project's virtual environment" in hint
    assert "activate the virtual environment (. .venv/bin/activate)" in hint
    assert install.missing_package("sklearn", "pip x") == "sklearn is not installed: pip x"
    monkeypatch.setattr(install.sys, "prefix", str(tmp_path / ".venv"))   # running in that venv
    assert install.missing_package("graphviz", "pip y") == "graphviz is not installed: pip y"


def test_viz_check_verdict_names_a_leaf_whose_gradient_is_wrong():
    from viz.__main__ import check_verdict
    from viz.example import two_layer

    net = two_layer()
    net.tape.backward(net.loss)
    text, passed = check_verdict(net)
    assert passed and "agree for every leaf (X, W1, b1, W2, b2)" in text  # in the drawing's order
    # A wrong VJP: b2's gradient 10% too large. (Scaling b2.grad stood for one while the
    # check read .grad; it asks the tape now, so the VJP itself is made wrong.)
    node = next(n for n in net.tape.nodes if any(x is net.params["b2"] for x in n.inputs))
    i = next(i for i, x in enumerate(node.inputs) if x is net.params["b2"])
    right = node.vjps[i]
    node.vjps = node.vjps[:i] + (lambda g: right(g) * 1.1,) + node.vjps[i + 1:]
    text, passed = check_verdict(net)
    assert not passed and "DISAGREES for b2" in text
