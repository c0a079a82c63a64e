"""Loading checkpoints: files that are not checkpoints, crafted headers, byte order."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models import MLP, CheckpointError, TwoLayerNet, checkpoint

ROOT = Path(__file__).resolve().parent.parent


def npy(shape, dtype, data: bytes | None = None) -> bytes:
    """A .npy file whose header declares ``shape`` and ``dtype``, holding ``data``."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                             "fortran_order": False, "shape": shape})
    if data is None:
        data = bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return f.getvalue() + data


def archive(path, entries, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, content in entries.items():
            z.writestr(f"{name}.npy", content)
    return path


def test_a_missing_file_is_named_once(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        TwoLayerNet.load("nope/params.npz")
    assert str(info.value) == ("[Errno 2] no such checkpoint (the folder 'nope' does not exist): "
                               "'nope/params.npz'")
    with pytest.raises(FileNotFoundError) as info:
        TwoLayerNet.load(tmp_path / "params.npz")
    assert str(info.value).count("params.npz") == 1 and "no such checkpoint file" in str(info.value)


@pytest.mark.parametrize("content, says", [
    (b"W1 = [[0.1, 0.2]]\n", "starts with b'W1 = [[0'"),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), r"starts with b'\x89PNG"),
    (b"", "is empty, not a checkpoint"),
])
def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path, content, says):
    path = tmp_path / "params.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        TwoLayerNet.load(path)
    message = str(info.value)
    assert "not a checkpoint" in message and says in message and "pickle" not in message


def test_a_device_is_not_a_checkpoint():
    with pytest.raises(CheckpointError, match=r"'/dev/zero' is a character device, not a checkpoint"):
        TwoLayerNet.load("/dev/zero")


FIFO_LOAD = """
import sys
sys.path.insert(0, {root!r})
from models import TwoLayerNet, CheckpointError
try:
    TwoLayerNet.load({path!r})
except CheckpointError as e:
    print(e)
"""


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "params.npz"
    os.mkfifo(fifo)
    # A child process, so that a regression hangs it and not the suite.
    done = subprocess.run([sys.executable, "-c", FIFO_LOAD.format(root=str(ROOT), path=str(fifo))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{str(fifo)!r} is a FIFO (named pipe), not a checkpoint file\n"


def test_a_header_larger_than_its_data_is_refused_before_allocating(tmp_path):
    # 2 MB on disk, but W1's header declares 2.16 GB of float64
    path = archive(tmp_path / "crafted.npz", {
        "W1": npy((270_000_000,), np.float64, bytes(2_000_000)), "b1": npy((2,), np.float64)})
    assert path.stat().st_size < 2_100_000
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"entry 'W1' declares float64 of shape "
                                                  r"\(270000000,\) \(2.2 GB\) but holds 2.0 MB"):
            TwoLayerNet.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000


def test_a_zip_bomb_entry_is_refused_before_unpacking(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "SMALL_ENTRY", 2**20)  # so that the test stays small
    zeros = np.zeros((1000, 1000))
    path = archive(tmp_path / "bomb.npz", {"W1": npy(zeros.shape, zeros.dtype), "b1": npy((1000,), "<f8"),
                                           "W2": npy((1000, 2), "<f8"), "b2": npy((2,), "<f8"),
                                           "activation": npy((), "<U7", np.array("sigmoid").tobytes())},
                   compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(CheckpointError, match=r"entry 'W1' would unpack .* into 8.0 MB"):
        TwoLayerNet.load(path)
    monkeypatch.setattr(checkpoint, "SMALL_ENTRY", 64 * 2**20)
    assert TwoLayerNet.load(path).sizes == (1000, 1000, 2)  # a small entry of zeros is fine


def test_shapes_are_checked_from_the_headers_before_any_data_is_read(tmp_path, monkeypatch):
    path = tmp_path / "bad.npz"
    np.savez(path, W1=np.zeros((3, 2)), b1=np.zeros(5), W2=np.zeros((2, 4)), b2=np.zeros(4))

    def read_data(*args):
        raise AssertionError("data read before the shapes were checked")

    monkeypatch.setattr(checkpoint, "_read_data", read_data)
    with pytest.raises(CheckpointError, match=r"W1 has shape \(3, 2\) and b1 has shape \(5,\)"):
        TwoLayerNet.load(path)


def test_an_entry_holding_more_than_its_header_declares_is_refused(tmp_path):
    path = archive(tmp_path / "long.npz", {"W1": npy((3, 2), "<f8", bytes(64)),
                                           "b1": npy((2,), "<f8")})
    with pytest.raises(CheckpointError, match=r"declares float64 of shape \(3, 2\) \(48 bytes\) "
                                              r"but holds 64 bytes"):
        MLP.load(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_big_endian_arrays_are_read_in_the_machines_byte_order(tmp_path, dtype, order):
    net = MLP((3, 5, 2), activation="tanh", seed=0, dtype=dtype)
    path = tmp_path / "big_endian.npz"
    big = {name: np.asarray(p.value, dtype=np.dtype(dtype).newbyteorder(">"), order=order)
           for name, p in net.params.items()}
    np.savez(path, **big, activation=np.array("tanh", dtype=">U4"))
    loaded = MLP.load(path)
    assert loaded.activation == "tanh" and loaded.dtype == dtype
    for name, p in net.params.items():
        value = loaded.params[name].value
        assert value.dtype == np.dtype(dtype) and value.dtype.isnative and value.flags.writeable
        np.testing.assert_array_equal(value, p.value)
    x = np.ones((4, 3), dtype=dtype)
    np.testing.assert_array_equal(loaded(x).value, net(x).value)


def test_a_corrupted_entry_fails_its_crc(tmp_path):
    path = TwoLayerNet(4, 3, 2, seed=0).save(tmp_path / "net.npz")
    data = bytearray(path.read_bytes())
    at = data.index(b"W1.npy") + 6 + 128 + 8  # inside W1's numbers
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"entry 'W1' is truncated or corrupt"):
        TwoLayerNet.load(path)


def test_a_saved_checkpoint_is_what_np_load_reads(tmp_path):
    net = MLP((3, 4, 2), activation="relu", seed=0, dtype=np.float32)
    with np.load(net.save(tmp_path / "net.npz")) as plain:
        assert sorted(plain.files) == ["W1", "W2", "activation", "b1", "b2"]
        assert str(plain["activation"]) == "relu"
        for name, p in net.params.items():
            assert plain[name].dtype == np.float32
            np.testing.assert_array_equal(plain[name], p.value)


def test_saving_refuses_object_arrays(tmp_path):
    with pytest.raises(ValueError, match="pickle"):
        checkpoint.save_arrays(tmp_path / "objects.npz", {"W1": np.array([{"a": 1}], dtype=object)})
    assert os.listdir(tmp_path) == []


def test_save_creates_the_folders_it_needs(tmp_path):
    net = MLP((3, 4, 2), activation="tanh", seed=0)
    path = net.save(tmp_path / "ckpt" / "run1" / "mlp.npz")
    assert MLP.load(path).activation == "tanh"
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        net.save(blocker / "mlp.npz")


def test_a_file_without_the_networks_configuration_is_refused(tmp_path):
    # A tanh network's weights, saved without its activation: loading it as sigmoid
    # would give another network silently.
    net = MLP((3, 4, 2), activation="tanh", seed=0)
    path = tmp_path / "bare.npz"
    np.savez(path, **{name: p.value for name, p in net.params.items()})
    for kind in (MLP, TwoLayerNet):
        with pytest.raises(CheckpointError, match="not the network's configuration") as info:
            kind.load(path)
        assert "'activation'" in str(info.value) and "net.save(path)" in str(info.value)


def test_names_that_would_not_come_back_as_given_are_refused(tmp_path):
    # An int key came back as the string '1', silently
    for arrays in ({1: np.ones(2)}, {"": np.ones(2)}):
        with pytest.raises(TypeError, match="names of the arrays must be non-empty strings"):
            checkpoint.save_arrays(tmp_path / "a.npz", arrays)
    assert not (tmp_path / "a.npz").exists()
