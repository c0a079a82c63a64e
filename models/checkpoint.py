"""Parameters on disk: .npz archives written atomically and read without pickle.

A checkpoint is a plain numpy .npz: one array per parameter, under its name
(``W1``, ``b1``, ...), plus any small string entries the network needs to
rebuild itself (its activation). Loading never unpickles: a file holding
Python objects is refused, since unpickling runs code from the file.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["CheckpointError", "save_arrays", "load_arrays"]


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used: corrupt, truncated or mismatched.

    The message names the file and what is wrong with it.
    """


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` as an .npz, atomically; return the path.

    The archive is written to a temporary file in the same folder and renamed
    over ``path`` only when complete, so an interrupted save leaves either the
    old file or the new one, never half of one. ``path`` is used exactly as
    given (no ``.npz`` is appended).
    """
    path = Path(path)
    folder = path.parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of the .npz at ``path``, refusing pickled objects.

    Raises FileNotFoundError if there is no such file, and
    :class:`CheckpointError` if it is not a complete .npz of plain arrays.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, f"no checkpoint file at {str(path)!r}", str(path))
    if path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a folder, not a checkpoint file")
    # The file is opened here, not by np.load, so that it is closed on every
    # error too (np.load leaks its handle when the zip directory is cut off).
    with open(path, "rb") as f:
        try:
            archive = np.load(f, allow_pickle=False)
        except ValueError as e:
            if "pickle" in str(e):
                raise CheckpointError(f"{str(path)!r} is not an .npz archive (it would need pickle "
                                      f"to read, which is refused)") from None
            raise CheckpointError(f"{str(path)!r} is not a readable .npz archive ({e})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"{str(path)!r} is not a readable .npz archive: truncated or "
                                  f"corrupt ({e})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{str(path)!r} holds a single .npy array, not an .npz archive "
                                  f"of named parameters")
        arrays = {}
        with archive:
            for name in archive.files:
                try:
                    arrays[name] = archive[name]
                except ValueError as e:
                    if "allow_pickle" in str(e) or "Object arrays" in str(e):
                        raise CheckpointError(
                            f"{str(path)!r}: entry {name!r} is an object array (pickled Python "
                            f"objects); refused, since unpickling can run code from the file"
                        ) from None
                    raise CheckpointError(f"{str(path)!r}: entry {name!r} is corrupt ({e})") from None
                except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
                    raise CheckpointError(f"{str(path)!r}: entry {name!r} is truncated or corrupt "
                                          f"({type(e).__name__}: {e})") from None
    return arrays
