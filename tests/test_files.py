"""Every file the project writes: atomic, with normal permissions, under faults.

Full disks, killed saves, FIFOs, read-only folders, symlinks and bad paths,
for checkpoints and drawings both (they share microtape.files). A full disk
and a read-only folder are real tmpfs mounts where the tests run as root and
may mount; elsewhere the disk is simulated and the folder is chmod'ed.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import io
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import viz
from microtape import files
from microtape.files import open_atomic, why_unwritable, write_atomic
from models import TwoLayerNet
from models.fit import History
from models.train import _plot
from viz.example import two_layer
from viz.steps import render_backward_steps

ROOT = Path(__file__).resolve().parent.parent
DRAWING = "graph.svg" if shutil.which("dot") else "graph.dot"


def save_checkpoint(path, seed=1):
    return TwoLayerNet(64, 32, 10, seed=seed).save(path)


def draw(path, seed=1):
    net = two_layer(seed=seed)
    net.tape.backward(net.loss)
    return viz.render(net.tape, path, net.loss)


def plot(path, seed=1):
    history = History()
    history.loss[:] = [1.0, 0.5 + seed / 10]
    history.train_accuracy[:] = history.test_accuracy[:] = [0.5, 0.9]
    return _plot(history, Path(path), "spirals")


# name: (file name, writer); a writer takes (path, seed) and writes different bytes per seed
WRITERS = {"checkpoint": ("params.npz", save_checkpoint), "drawing": (DRAWING, draw),
           "loss plot": ("loss.png", plot)}
BOTH = ["checkpoint", "drawing"]


def temp_files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


@contextlib.contextmanager
def tmpfs(folder: Path, options: str):
    """A tmpfs mounted on ``folder`` (yields True), or nothing (False) if this process cannot."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield False
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True)
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


# -- permissions ----------------------------------------------------------------------------

@pytest.fixture
def umask():
    def set_umask(mask):
        os.umask(mask)
    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("kind", WRITERS)
def test_new_files_get_the_usual_permissions(tmp_path, umask, kind):
    name, write = WRITERS[kind]
    for mask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        umask(mask)
        path = tmp_path / f"{mask:o}" / name
        path.parent.mkdir()
        write(path)
        assert stat.S_IMODE(path.stat().st_mode) == mode, (kind, oct(mask))


def test_the_step_pages_get_the_usual_permissions(tmp_path, umask):
    net = two_layer()
    index = render_backward_steps(net.tape, net.loss, tmp_path / "steps")
    written = list(index.parent.iterdir())
    assert written == [index] and not temp_files(index.parent)  # one page holds every frame
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o644}


@pytest.mark.parametrize("kind", WRITERS)
def test_overwriting_keeps_the_files_mode(tmp_path, umask, kind):
    name, write = WRITERS[kind]
    path = tmp_path / name
    for mode in (0o664, 0o600, 0o640):
        write(path, seed=1)
        path.chmod(mode)
        before = path.read_bytes()
        write(path, seed=2)
        assert path.read_bytes() != before  # really written again
        assert stat.S_IMODE(path.stat().st_mode) == mode


# -- errors name the user's path ------------------------------------------------------------

@pytest.mark.parametrize("kind", BOTH)
def test_errors_name_the_path_given_never_the_temporary_file(tmp_path, kind):
    name, write = WRITERS[kind]
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    folder = tmp_path / "folder" / name  # a folder named like the file
    folder.mkdir(parents=True)
    for path in (blocker / name, blocker / "below" / name, folder):
        with pytest.raises(OSError) as info:
            write(path)
        assert str(path) in str(info.value) and ".tmp" not in str(info.value)
        assert "is a file, not a folder" in str(info.value) or "is not a folder" in str(info.value) \
            or "this is a folder" in str(info.value)
    assert temp_files(tmp_path) == [] and temp_files(folder.parent) == []


def test_a_missing_folder_and_an_empty_path_say_so(tmp_path):
    # write_atomic writes into folders that exist (a checkpoint's save creates its own).
    with pytest.raises(FileNotFoundError) as info:
        write_atomic(tmp_path / "nope" / "params.npz", b"x")
    assert str(info.value).count("params.npz") == 1
    assert f"the folder {str(tmp_path / 'nope')!r} does not exist" in str(info.value)
    with pytest.raises(FileNotFoundError, match="the path is empty; give a file name"):
        save_checkpoint("")
    with pytest.raises(IsADirectoryError, match="folder; give a file name"):
        write_atomic(tmp_path, b"x")


# -- full disk ------------------------------------------------------------------------------

class FullDisk:
    """A folder whose disk fills up when ``fill()`` is called.

    As root, a 1 MiB tmpfs really filled with a filler file; otherwise (or if
    mounting fails) every file opened by the atomic writer fails with ENOSPC
    after its first 64 bytes, as a real full disk fails a write.
    """

    def __init__(self, folder: Path, real: bool, monkeypatch):
        self.folder, self.real, self.monkeypatch = folder, real, monkeypatch

    def fill(self):
        if self.real:
            fd = os.open(self.folder / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC
            finally:
                os.close(fd)
            return
        fdopen = os.fdopen

        class Full(io.FileIO):
            room = 64

            def write(self, data):
                data = bytes(data)[:Full.room]
                if not data:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                Full.room -= len(data)
                return super().write(data)

        def full_fdopen(fd, mode="r", *args, **kwargs):
            if "w" not in mode:
                return fdopen(fd, mode, *args, **kwargs)
            return io.BufferedWriter(Full(fd, "w"))

        self.monkeypatch.setattr(os, "fdopen", full_fdopen)


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    folder = tmp_path / "disk"
    folder.mkdir()
    with tmpfs(folder, "size=1m") as real:
        yield FullDisk(folder, real, monkeypatch)


@pytest.mark.parametrize("kind", BOTH)
def test_a_full_disk_keeps_the_old_file(full_disk, kind):
    name, write = WRITERS[kind]
    path = full_disk.folder / name
    write(path, seed=1)
    before = path.read_bytes()
    full_disk.fill()
    with pytest.raises(OSError) as info:
        write(path, seed=2)
    assert info.value.errno == errno.ENOSPC
    assert str(path) in str(info.value) and ".tmp" not in str(info.value)
    assert path.read_bytes() == before
    assert temp_files(full_disk.folder) == []


# -- a killed save --------------------------------------------------------------------------

KILLED_SAVE = """
import os, sys
sys.path.insert(0, {root!r})
import models, viz, viz.example

def hang(fd):  # the temporary file is written; the process dies before the rename
    print("saving", flush=True)
    sys.stdin.read()

os.fsync = hang
path = {path!r}
if {kind!r} == "checkpoint":
    models.TwoLayerNet(64, 32, 10, seed=2).save(path)
else:
    net = viz.example.two_layer(seed=2)
    net.tape.backward(net.loss)
    viz.render(net.tape, path, net.loss)
"""


@pytest.mark.parametrize("kind", BOTH)
def test_a_killed_save_keeps_the_old_file_and_its_leftover_is_cleaned(tmp_path, kind):
    name, write = WRITERS[kind]
    path = tmp_path / name
    write(path, seed=1)
    before = path.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE.format(root=str(ROOT), path=str(path),
                                                                       kind=kind)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "saving\n"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert path.read_bytes() == before
    leftover = temp_files(tmp_path)
    assert leftover == [f".{name}.{child.pid}-{files._HOST}-{leftover[0][-12:-4]}.tmp"]
    write(path, seed=3)  # the next save removes what the killed one left
    assert temp_files(tmp_path) == [] and path.read_bytes() != before


def test_only_abandoned_temporary_files_of_our_naming_are_removed(tmp_path):
    path = tmp_path / "params.npz"
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(done.stdout)
    host = files._HOST
    other = "000000" if host != "000000" else "111111"
    removed = [f".params.npz.{dead}-{host}-0123abcd.tmp",
               f".params.npz.{os.getpid()}-{host}-0123abcd.tmp"]  # ours, from a killed run
    kept = [f".params.npz.1-{host}-0123abcd.tmp",                  # pid 1 is alive
            f".params.npz.{dead}-{other}-0123abcd.tmp",            # another machine's
            f".graph.svg.{dead}-{host}-0123abcd.tmp",              # another file's
            f".params.npz.{dead}-{host}-0123abcd.tmp.keep",        # not our naming
            ".params.npz.abc123.tmp"]
    for name in removed + kept:
        (tmp_path / name).write_text("partial")
    write_atomic(path, b"new")
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["params.npz"])


def test_a_save_in_progress_is_not_taken_for_abandoned(tmp_path):
    path = tmp_path / "a.bin"
    with open_atomic(path) as f:
        f.write(b"first")
        (mine,) = temp_files(tmp_path)
        write_atomic(path, b"second")  # same process, same target: must not remove `mine`
        assert temp_files(tmp_path) == [mine]
    assert path.read_bytes() == b"first"
    assert temp_files(tmp_path) == []


def test_an_error_while_writing_removes_the_temporary_file(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with open_atomic(path) as f:
            f.write(b"half")
            raise RuntimeError
    assert path.read_bytes() == b"old" and temp_files(tmp_path) == []


# -- FIFOs and other non-files --------------------------------------------------------------

FIFO_SAVE = """
import os, stat, sys
sys.path.insert(0, {root!r})
from tests.test_files import WRITERS
try:
    WRITERS[{kind!r}][1]({path!r})
except FileExistsError as e:
    print(e)
"""


@pytest.mark.parametrize("kind", BOTH)
def test_saving_over_a_fifo_refuses_and_leaves_it(tmp_path, kind):
    name, _ = WRITERS[kind]
    fifo = tmp_path / name
    os.mkfifo(fifo)
    # In a child process: writing into a FIFO without a reader would block forever.
    done = subprocess.run([sys.executable, "-c", FIFO_SAVE.format(root=str(ROOT), kind=kind,
                                                                  path=str(fifo))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "this is a FIFO (named pipe), not a regular file" in done.stdout
    assert str(fifo) in done.stdout
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and temp_files(tmp_path) == []


# -- read-only folders ----------------------------------------------------------------------

@pytest.fixture
def read_only(tmp_path):
    """A folder holding files, then made read-only: call it after writing them."""
    folder = tmp_path / "ro"
    folder.mkdir()
    with tmpfs(folder, "size=4m") as real:
        if not real and os.geteuid() == 0:
            pytest.skip("root writes into any folder whatever its mode, and this process "
                        "cannot mount a read-only tmpfs")

        def freeze():
            if real:
                subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
            else:
                folder.chmod(0o555)

        try:
            yield folder, freeze
        finally:
            if not real:
                folder.chmod(0o755)


@pytest.mark.parametrize("kind", BOTH)
def test_a_read_only_folder_keeps_the_old_file_and_says_so(read_only, kind):
    folder, freeze = read_only
    name, write = WRITERS[kind]
    path = folder / name
    write(path, seed=1)
    before = path.read_bytes()
    freeze()
    with pytest.raises(OSError) as info:
        write(path, seed=2)
    assert info.value.errno in (errno.EROFS, errno.EACCES)
    assert str(path) in str(info.value) and ".tmp" not in str(info.value)
    assert ("read-only" in str(info.value)) or ("permission denied" in str(info.value))
    assert path.read_bytes() == before


# -- symlinks -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", BOTH)
def test_saving_to_a_symlink_writes_through_to_its_target(tmp_path, kind):
    name, write = WRITERS[kind]
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / name
    link = tmp_path / name
    link.symlink_to(Path("real") / name)  # relative, as links usually are
    write(link, seed=1)                    # a dangling link: its target is created
    assert link.is_symlink() and target.is_file()
    target.chmod(0o640)
    before = target.read_bytes()
    write(link, seed=2)
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / name)
    assert target.read_bytes() != before and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert temp_files(tmp_path) == temp_files(tmp_path / "real") == []


def test_a_loop_of_symlinks_is_an_error_naming_the_path(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(OSError, match="loop of links") as info:
        save_checkpoint(a)
    assert str(a) in str(info.value) and a.is_symlink() and b.is_symlink()


def test_write_atomic_takes_a_bytes_path_and_returns_a_path(tmp_path):
    # it wrote the file, then raised a TypeError making a Path of the bytes
    target = tmp_path / "notes.txt"
    assert write_atomic(os.fsencode(target), "hi") == target and target.read_text() == "hi"


def test_write_atomic_writes_text_as_utf8(tmp_path):
    path = write_atomic(tmp_path / "page.html", "∂J/∂W₁")
    assert path == tmp_path / "page.html" and path.read_bytes() == "∂J/∂W₁".encode("utf-8")


# -- one writer ----------------------------------------------------------------------------

_WRITING_METHODS = {"write_text", "write_bytes", "save", "savez", "savez_compressed", "savetxt",
                    "tofile", "copy", "copyfile", "copy2", "move", "replace", "rename"}


def _direct_writes(path: Path) -> list[str]:
    """Calls in ``path`` that would write a file without microtape.files."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        mode = node.args[1:2] + [k.value for k in node.keywords if k.arg == "mode"]
        writes_mode = any(isinstance(m, ast.Constant) and isinstance(m.value, str)
                          and set(m.value) & set("wax+") for m in mode)
        if isinstance(f, ast.Name) and f.id == "open" and writes_mode:
            found.append(f"{path.name}:{node.lineno} open(..., mode)")
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (
                (f.value.id in ("np", "numpy", "shutil", "os") and f.attr in _WRITING_METHODS)
                or (f.value.id == "os" and f.attr == "open" and "O_CREAT" in ast.unparse(node))):
            found.append(f"{path.name}:{node.lineno} {f.value.id}.{f.attr}")
        elif isinstance(f, ast.Attribute) and f.attr in ("write_text", "write_bytes", "tofile"):
            found.append(f"{path.name}:{node.lineno} .{f.attr}")
    return found


def test_every_file_is_written_through_microtape_files():
    root = Path(__file__).resolve().parents[1]
    sources = [p for folder in ("microtape", "models", "viz", "tests/benchmarks")
               for p in sorted((root / folder).glob("*.py")) if p.name != "files.py"]
    assert [hit for p in sources for hit in _direct_writes(p)] == []


def test_why_unwritable_says_what_is_in_the_way(tmp_path):
    (tmp_path / "afile").write_text("", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    assert why_unwritable(tmp_path / "new" / "deeper" / "x.txt") is None
    assert why_unwritable(tmp_path / "folder", folder=True) is None
    assert why_unwritable(tmp_path / "folder").startswith("is a folder; name a file in it")
    assert why_unwritable(tmp_path / "afile", folder=True) == "is a file, not a folder"
    assert why_unwritable(tmp_path / "afile" / "x" / "y.txt") == (
        f"{tmp_path / 'afile'} is a file, so no folder can be made there")
