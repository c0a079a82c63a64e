"""files: every file microtape, its models and its drawings write, written atomically.

``write_atomic(path, data)`` and ``with open_atomic(path) as f:`` write to a
temporary file in the same folder, flush it to disk (fsync) and rename it
over ``path`` only when it is complete. A save that fails or is killed
midway therefore leaves the old file as it was, never half of a new one.

- Permissions: a new file gets the usual ones, 0666 less the umask (0644
  under the default umask 022); a file written over keeps its mode (and its
  owner and group, where the process may set them).
- Errors are OSErrors naming the path the caller gave, never the temporary
  file: ``[Errno 2] the folder 'out' does not exist: 'out/params.npz'``.
- Symlinks: writing to a symlink writes through it to the file it points to
  (as ``open(path, "w")`` does) and keeps the link. A file with several hard
  links gets a new inode, so its other names keep the old contents.
- A folder, FIFO or device at ``path`` is refused, never replaced.
- ``make_folder(path)`` creates the folders ``path`` needs, for writers that
  create them (a checkpoint's, a drawing's), with errors that name ``path``;
  ``why_unwritable(path)`` says beforehand what is in the way, for commands
  that check their options before they work.
- Temporary files are named ``.<name>.<pid>-<host>-<random>.tmp`` next to
  ``<name>``. A process killed while saving (SIGKILL, power loss) leaves one
  behind; the next save to the same name on the same machine deletes those
  whose process has gone. Any left after that are safe to delete by hand.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import stat
import threading
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["open_atomic", "write_atomic", "make_folder", "file_kind", "why_unwritable"]

# The names of the temporary files this process is writing now (see _is_stale).
_writing: set[str] = set()
_writing_lock = threading.Lock()
_HOST = hashlib.blake2s(socket.gethostname().encode(), digest_size=3).hexdigest()
_MAX_NAME_BYTES = 200  # of the target's name inside a temporary name; most file systems allow 255


def write_atomic(path: str | os.PathLike, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text is encoded with ``encoding``) to ``path`` atomically; return the path."""
    if isinstance(data, str):
        data = data.encode(encoding)
    with open_atomic(path) as f:
        f.write(data)
    return Path(os.fsdecode(path))  # a bytes path is written as it is, and returned as a Path


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write; on leaving the block without an error it replaces ``path``.

    If the block raises (or the process dies), ``path`` is left untouched and
    the temporary file is removed (or, after a kill, removed by the next save).
    """
    shown, target = _target(path)
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    except OSError as e:
        raise _error(e, shown, target) from None
    if old is not None and stat.S_ISDIR(old.st_mode):
        raise IsADirectoryError(errno.EISDIR, "this is a folder; give a file name inside it", shown)
    if old is not None and not stat.S_ISREG(old.st_mode):
        # Renaming over a FIFO or a device (/dev/null, as root) would replace it.
        raise FileExistsError(errno.EEXIST, f"this is {file_kind(old.st_mode)}, not a regular "
                                            f"file; it is left as it is", shown)
    _remove_stale(target)
    tmp, fd = _create_temp(target, shown, old)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        _sync_folder(target.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _error(e, shown, target) from None
        raise
    finally:
        _forget(tmp)


def _target(path: str | os.PathLike) -> tuple[str, Path]:
    """The path as the user gave it (for messages), and the file to replace."""
    shown = os.fspath(path)
    if isinstance(shown, bytes):
        shown = os.fsdecode(shown)
    if shown == "":
        raise FileNotFoundError(errno.ENOENT, "the path is empty; give a file name", shown)
    target = Path(shown)
    if os.path.islink(target):
        target = Path(os.path.realpath(target))
        if os.path.islink(target):
            raise OSError(errno.ELOOP, "the symlink does not lead to a file (a loop of links)", shown)
    return shown, target


def make_folder(path: str | os.PathLike) -> None:
    """Create the folder ``path`` goes in, and any above it; errors name ``path``."""
    shown = os.fspath(path)
    folder = Path(shown).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(errno.ENOTDIR, f"part of {str(folder)!r} is a file, not a "
                                                f"folder", shown) from None
    except OSError as e:
        raise OSError(e.errno, f"cannot create the folder {str(folder)!r}: {e.strerror}",
                      shown) from None


def why_unwritable(path: str | os.PathLike, folder: bool = False) -> str | None:
    """Why ``path`` cannot be written as a file (or, with ``folder``, made a folder of
    files), said before any work is done; None when nothing in the way is known."""
    path = Path(path)
    if path.is_dir() and not folder:
        return f"is a folder; name a file in it, e.g. {path / 'out'}"
    if path.exists() and not path.is_dir() and folder:
        return "is a file, not a folder"
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if above.exists() and not above.is_dir():
        return f"{above} is a file, so no folder can be made there"
    return None


def file_kind(mode: int) -> str:
    """What an ``os.stat`` mode describes, for messages: "a folder", "a FIFO (named pipe)", ..."""
    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _create_temp(target: Path, shown: str, old: os.stat_result | None) -> tuple[Path, int]:
    """A new temporary file next to ``target``, open for writing, with its final permissions."""
    name = _short(target.name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f".{name}.{os.getpid()}-{_HOST}-{secrets.token_hex(4)}.tmp")
        with _writing_lock:  # before it exists, so no other thread takes it for stale
            _writing.add(tmp.name)
        try:
            # 0o666: the kernel takes the umask off, as it does for open(path, "w")
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            _forget(tmp)
            continue
        except OSError as e:
            _forget(tmp)
            raise _error(e, shown, target) from None
        break
    else:  # pragma: no cover - 100 collisions of 32 random bits
        raise FileExistsError(errno.EEXIST, "could not pick a temporary file name", shown)
    if old is not None and os.name == "posix":
        try:
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
            if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(OSError):  # only root may give a file away
                    os.fchown(fd, old.st_uid, old.st_gid)
        except BaseException as e:
            os.close(fd)
            os.unlink(tmp)
            _forget(tmp)
            if isinstance(e, OSError):
                raise _error(e, shown, target) from None
            raise
    return tmp, fd


def _forget(tmp: Path) -> None:
    with _writing_lock:
        _writing.discard(tmp.name)


def _short(name: str) -> str:
    """The target's name as it appears in a temporary name: cut to fit the 255-byte limit."""
    return os.fsencode(name)[:_MAX_NAME_BYTES].decode(errors="ignore")


def _error(e: OSError, shown: str, target: Path) -> OSError:
    """``e`` restated about the user's path, with the folder named where it is the problem."""
    if e.errno is None:
        return OSError(f"cannot write {shown!r}: {e}")
    folder = str(target.parent)
    reason = {
        errno.ENOENT: f"the folder {folder!r} does not exist",
        errno.ENOTDIR: f"{folder!r} is not a folder",
        errno.EACCES: f"permission denied: cannot create files in {folder!r}",
        errno.EROFS: f"the folder {folder!r} is on a read-only file system",
        errno.ENOSPC: "no space left on the device; the old file, if any, is unchanged",
    }.get(e.errno, os.strerror(e.errno))
    return OSError(e.errno, reason, shown)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; some systems cannot fsync a folder, which is fine."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale(target: Path) -> None:
    """Delete temporary files left next to ``target`` by saves that were killed."""
    if os.name != "posix":  # no cheap, safe test of "is that process alive"
        return
    pattern = re.compile(rf"\.{re.escape(_short(target.name))}\.(\d+)-{_HOST}-[0-9a-f]{{8}}\.tmp")
    try:
        with os.scandir(target.parent) as it:
            entries = list(it)
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and _is_stale(entry.name, int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _is_stale(name: str, pid: int) -> bool:
    """Was the temporary file ``name``, made by process ``pid`` of this host, abandoned?"""
    if pid == os.getpid():
        # Our own pid: stale unless we are writing it now (a container's
        # process often gets the same pid as the one that was killed).
        with _writing_lock:
            return name not in _writing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, under another user
        return False
    return False
