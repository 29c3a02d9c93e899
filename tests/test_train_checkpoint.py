"""dasslib.train.checkpoint: the file layout of a checksummed checkpoint, checked with hashlib and torch.load
directly, and load_checkpoint's messages word for word."""
import hashlib
import io

import pytest
import torch

from dasslib.train.checkpoint import atomic_save, load_checkpoint

STATE = {"w": torch.arange(4.0), "step": 3, "name": "run"}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k]
                                        for k in a)


def test_plain_save_is_a_torch_file(tmp_path):
    path = tmp_path / "plain.pt"
    assert atomic_save(STATE, str(path)) == path
    assert same(torch.load(path, weights_only=True), STATE)
    assert same(load_checkpoint(path), STATE)


def test_checksummed_save_layout(tmp_path):
    """``DASSLIB-CHECKPOINT sha256=<64 hex digits>\\n`` and then the torch.save bytes, whose SHA-256 it is."""
    path = tmp_path / "ck.pt"
    assert atomic_save(STATE, path, checksum=True) == path
    data = path.read_bytes()
    header, payload = data.split(b"\n", 1)
    assert header == b"DASSLIB-CHECKPOINT sha256=" + hashlib.sha256(payload).hexdigest().encode()
    assert same(torch.load(io.BytesIO(payload), weights_only=True), STATE)
    assert same(load_checkpoint(path), STATE)


def corrupt_message(path, payload, header_digest):
    return (f"checkpoint {path} is corrupt: the SHA-256 of its payload is {hashlib.sha256(payload).hexdigest()}, "
            f"its header says {header_digest} (the file was changed after it was written); delete it to start "
            "over, or restore it from a copy")


def test_a_changed_payload_byte_is_reported(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save(STATE, path, checksum=True)
    header, payload = path.read_bytes().split(b"\n", 1)
    changed = bytearray(payload)
    changed[len(changed) // 2] ^= 0xFF
    path.write_bytes(header + b"\n" + bytes(changed))
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    assert str(err.value) == corrupt_message(path, bytes(changed), hashlib.sha256(payload).hexdigest())


def test_a_changed_header_is_reported(tmp_path):
    path = tmp_path / "ck.pt"
    atomic_save(STATE, path, checksum=True)
    _, payload = path.read_bytes().split(b"\n", 1)
    path.write_bytes(b"DASSLIB-CHECKPOINT sha256=" + b"0" * 64 + b"\n" + payload)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    assert str(err.value) == corrupt_message(path, payload, "0" * 64)


def test_a_header_with_non_ascii_bytes_is_reported_as_corrupt(tmp_path):
    """Overwritten header bytes that are not ASCII still give the corrupt-file message (shown as U+FFFD)."""
    path = tmp_path / "ck.pt"
    atomic_save(STATE, path, checksum=True)
    _, payload = path.read_bytes().split(b"\n", 1)
    path.write_bytes(b"DASSLIB-CHECKPOINT sha256=" + b"\xff" + b"0" * 63 + b"\n" + payload)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    assert str(err.value) == corrupt_message(path, payload, "\ufffd" + "0" * 63)


def test_missing_checkpoint(tmp_path):
    for path in (tmp_path / "none.pt", tmp_path):          # a folder is no checkpoint either
        with pytest.raises(FileNotFoundError) as err:
            load_checkpoint(path)
        assert str(err.value) == f"no checkpoint at {path}"


class _Opaque:
    """A picklable object that weights-only loading refuses."""


def test_unreadable_checkpoints_are_named(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError) as err:
        load_checkpoint(empty)
    assert str(err.value).startswith(f"cannot read checkpoint {empty}: ") and err.value.__cause__ is not None
    # tensors and plain values only: a pickled object is refused, also inside a checksummed file
    obj = tmp_path / "obj.pt"
    atomic_save({"w": torch.ones(1), "trainer": _Opaque()}, obj, checksum=True)
    with pytest.raises(ValueError) as err:
        load_checkpoint(obj)
    assert str(err.value).startswith(f"cannot read checkpoint {obj}: ") and "_Opaque" in str(err.value)


def test_map_location(tmp_path, monkeypatch):
    import torch.serialization as serialization

    path = tmp_path / "gpu.pt"
    with monkeypatch.context() as m:   # tag every storage "cuda:0" while saving, as a GPU run would
        m.setattr(serialization, "_package_registry", list(serialization._package_registry))
        serialization.register_package(0, lambda storage: "cuda:0", lambda obj, location: None)
        atomic_save({"w": torch.arange(3.0)}, path, checksum=True)
    loaded = load_checkpoint(path)                         # onto the CPU by default, also without CUDA
    assert loaded["w"].device == torch.device("cpu") and torch.equal(loaded["w"], torch.arange(3.0))
    assert load_checkpoint(path, map_location="meta")["w"].device == torch.device("meta")
