"""Parameters on disk: .npz archives written atomically and read without pickle.

A checkpoint is a plain numpy .npz: one array per parameter, under its name
(``W1``, ``b1``, ...), plus the configuration the network needs to rebuild
itself (its activation), which ``load`` requires. Loading never unpickles: a file holding
Python objects is refused, since unpickling runs code from the file. Each
entry's .npy header (shape, dtype) is checked against the size the archive
gives it, and against what the caller expects, before any data is read, so a
crafted file cannot make ``load`` allocate more than it holds.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from microtape.files import file_kind, make_folder, open_atomic

__all__ = ["CheckpointError", "save_arrays", "load_arrays"]

# A compressed entry may unpack to at most this many times its packed size
# (float parameters barely compress; a zip bomb packs 1000:1), unless it is small.
MAX_RATIO = 100
SMALL_ENTRY = 64 * 2**20  # bytes
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used: corrupt, truncated or mismatched.

    The message names the file and what is wrong with it.
    """


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` as an .npz, atomically; return the path.

    The archive is written to a temporary file in the same folder and renamed
    over ``path`` only when complete (see ``microtape.files``), so an
    interrupted save leaves either the old file or the new one, never half of
    one. Missing folders on the way to ``path`` are created. ``path`` is used
    exactly as given (no ``.npz`` is appended).
    """
    odd = [name for name in arrays if not isinstance(name, str) or not name]
    if odd:  # an int key would come back as a string, silently
        raise TypeError(f"save_arrays: the names of the arrays must be non-empty strings, as "
                        f"they come back; got {odd}")
    make_folder(path)
    with open_atomic(path) as f:
        # What np.savez writes, but with the archive closed on every error: numpy 1.x's
        # savez leaves it open after a failed write (a full disk), to fail again when collected.
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.asanyarray(array), allow_pickle=False)
    return Path(path)


def load_arrays(path: str | os.PathLike,
                check: Callable[[dict[str, np.ndarray]], None] | None = None) -> dict[str, np.ndarray]:
    """Read every array of the .npz at ``path``, refusing pickled objects.

    ``check``, if given, sees every entry as declared by its header (an array
    of the declared shape and dtype whose contents must not be read) before
    any data is read, and raises to refuse the file. Big-endian arrays are
    converted to the machine's byte order.

    Raises FileNotFoundError if there is no such file, and
    :class:`CheckpointError` if it is not a complete .npz of plain arrays.
    """
    where = repr(str(path))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        folder = os.path.dirname(os.fspath(path))
        reason = (f"no such checkpoint (the folder {folder!r} does not exist)"
                  if folder and not os.path.isdir(folder) else "no such checkpoint file")
        raise FileNotFoundError(2, reason, str(path)) from None
    _check_regular(info, where)
    # O_NONBLOCK: if the file was swapped for a FIFO since the stat, opening must not hang.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        _check_regular(info, where)
        head = f.read(8)
        f.seek(0)
        if head.startswith(_NPY_MAGIC):
            raise CheckpointError(f"{where} holds a single .npy array, not an .npz archive "
                                  f"of named parameters")
        if not head.startswith(_ZIP_MAGIC):
            raise CheckpointError(_not_a_checkpoint(where, head))
        try:
            with zipfile.ZipFile(f) as archive:
                return _read_archive(archive, info.st_size, where, check)
        except zipfile.BadZipFile as e:
            raise CheckpointError(f"{where} is not a readable .npz archive: truncated or "
                                  f"corrupt ({e})") from None


def _check_regular(info: os.stat_result, where: str) -> None:
    if stat.S_ISREG(info.st_mode):
        return
    raise CheckpointError(f"{where} is {file_kind(info.st_mode)}, not a checkpoint file")


def _not_a_checkpoint(where: str, head: bytes) -> str:
    if not head:
        return f"{where} is empty, not a checkpoint (a save that was cut off?)"
    return (f"{where} is not a checkpoint: a checkpoint is an .npz archive (a zip file, "
            f"starting with b'PK'), and this file starts with {head!r}")


def _read_archive(archive: zipfile.ZipFile, file_size: int, where: str,
                  check: Callable[[dict[str, np.ndarray]], None] | None) -> dict[str, np.ndarray]:
    """Every entry's header first (checked), then the data."""
    headers = {}
    for member in archive.infolist():
        name = member.filename.removesuffix(".npy")
        if member.is_dir() or not member.filename.endswith(".npy"):
            raise CheckpointError(f"{where}: entry {member.filename!r} is not a .npy array")
        headers[name] = (member, *_read_header(archive, member, file_size, where, name))
    if check is not None:
        check({name: _declared(shape, dtype) for name, (_, _, shape, _, dtype) in headers.items()})
    return {name: _read_data(archive, *header, where, name) for name, header in headers.items()}


def _read_header(archive: zipfile.ZipFile, member: zipfile.ZipInfo, file_size: int, where: str,
                 name: str) -> tuple[int, tuple[int, ...], bool, np.dtype]:
    """The entry's header size, declared shape, order and dtype, once they prove
    consistent with the size the archive gives it."""
    try:
        with archive.open(member) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise CheckpointError(f"{where}: entry {name!r} is a .npy of version "
                                      f"{version[0]}.{version[1]}, which is not read here")
            header_size = f.tell()
    except CheckpointError:
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointError(f"{where}: entry {name!r} is truncated or corrupt ({e})") from None
    if dtype.hasobject:
        raise CheckpointError(
            f"{where}: entry {name!r} is an object array (pickled Python objects); refused, "
            f"since unpickling can run code from the file")
    declared = math.prod(shape) * dtype.itemsize
    if member.file_size != header_size + declared:
        raise CheckpointError(
            f"{where}: entry {name!r} declares {dtype} of shape {shape} ({_size(declared)}) but "
            f"holds {_size(member.file_size - header_size)}: corrupt or crafted; nothing was read")
    if member.header_offset + member.compress_size > file_size:
        raise CheckpointError(f"{where}: entry {name!r} runs past the end of the file: truncated")
    packed = member.compress_type != zipfile.ZIP_STORED
    if (not packed and member.compress_size != member.file_size) or (
            packed and member.file_size > max(SMALL_ENTRY, MAX_RATIO * member.compress_size)):
        raise CheckpointError(
            f"{where}: entry {name!r} would unpack {_size(member.compress_size)} into "
            f"{_size(member.file_size)}; parameters do not compress like that, so it is refused")
    return header_size, shape, fortran, dtype


def _declared(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A stand-in with the entry's shape and (native) dtype that occupies one element."""
    return np.lib.stride_tricks.as_strided(np.zeros((), dtype.newbyteorder("=")), shape,
                                           (0,) * len(shape), writeable=False)


def _read_data(archive: zipfile.ZipFile, member: zipfile.ZipInfo, header_size: int,
               shape: tuple[int, ...], fortran: bool, dtype: np.dtype, where: str,
               name: str) -> np.ndarray:
    """The entry's array, read straight into its buffer, in the machine's byte order."""
    array = np.empty(shape, dtype, order="F" if fortran else "C")
    buffer = memoryview(array.reshape(-1, order="A").view(np.uint8))  # the array's own bytes
    try:
        with archive.open(member) as f:
            f.read(header_size)
            got = f.readinto(buffer)
            f.read(1)  # reaching the end makes zipfile check the CRC
    except (EOFError, OSError, zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointError(f"{where}: entry {name!r} is truncated or corrupt "
                              f"({type(e).__name__}: {e})") from None
    if got != len(buffer):
        raise CheckpointError(f"{where}: entry {name!r} is truncated or corrupt (its data ends "
                              f"after {got} of {len(buffer)} bytes)")
    if not dtype.isnative:
        # e.g. '>f8' from a big-endian machine: swapped in place, no second copy
        array = array.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return array


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
