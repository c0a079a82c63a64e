"""numpy's warnings inside an op name the op and point at the caller's line, not at microtape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """\
import numpy as np
import microtape as mt
x = mt.Tensor(np.array([-1.0, 2.0]), name="x")
with mt.Tape() as tape:
    y = mt.log(x)
    z = mt.log(x * 1.0)
    J = mt.sum(y)
for _ in range(3):
    mt.log(x)
u = mt.Tensor(np.array([0.0, 1.0]), name="u")
with mt.Tape() as tape2:
    L = mt.sum(mt.log(u + 1.0))
    M = mt.sum(u ** 0.5)
g = tape2.gradient(M, u)
with mt.Tape() as tape3:
    S = mt.sum(mt.sqrt(u))
g = tape3.gradient(S, u)
print("done")
"""


def _run(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, *flags, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})


def test_a_warning_in_an_op_names_it_at_the_callers_line(tmp_path):
    result = _run(tmp_path)
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    err = result.stderr
    assert "ops.py" not in err and "microtape" not in err
    # One warning per line of the script that called the op, each naming it.
    assert "user_script.py:5: RuntimeWarning: log: invalid value encountered in log" in err
    assert "user_script.py:6: RuntimeWarning: log: invalid value encountered in log" in err
    assert err.count("user_script.py:9: RuntimeWarning: log:") == 1  # a loop warns once
    # In the backward pass: the VJP of the op, at the line that asked for the gradient.
    assert ("user_script.py:14: RuntimeWarning: pow's VJP (backward pass): divide by zero"
            in err)
    # sqrt's VJP is spelled in ops (a div): the warning is sqrt's VJP's, not div's
    assert ("user_script.py:17: RuntimeWarning: sqrt's VJP (backward pass): divide by zero"
            in err)


def test_the_users_filters_still_decide(tmp_path):
    assert _run(tmp_path, "-W", "ignore::RuntimeWarning").stderr == ""
    result = _run(tmp_path, "-W", "error::RuntimeWarning")
    assert result.returncode == 1 and "RuntimeWarning: invalid value encountered in log" in result.stderr
    assert "user_script.py\", line 5" in result.stderr    # the traceback shows the caller's line



def test_code_run_by_python_c_gets_the_warning_not_an_import_error():
    # Its module's loader has no source to give the warning's line: passing its globals
    # to warn_explicit raised ImportError('__main__' is not a built-in module)
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0 and result.stdout == "done\n", result.stderr
    assert "<string>:5: RuntimeWarning: log: invalid value encountered in log" in result.stderr
    assert "ImportError" not in result.stderr
