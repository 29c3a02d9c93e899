"""dasslib.models.checkpoints on a hand-made three-tensor model: which report list each key lands in, the
report's text, the verbose log, and every error message word for word (the expectations are written out,
not derived from the code)."""
import logging
import re

import pytest
import torch

from dasslib.models.checkpoints import (
    LoadReport,
    init_dass_from_vmamba,
    load_official,
    map_official_keys,
    read_state_dict,
)


class Tiny(torch.nn.Module):
    """Keys ``lin.weight`` (3, 2), ``lin.bias`` (3,), ``scale`` (1,); official keys carry ``module.`` then
    ``v.``, and the official ``head.<n>.weight`` / ``dist_token`` keys are unused."""
    official_prefixes = ("module.", "v.")
    official_ignored = (r"head\.\d+\.weight", "dist_token")

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 3)
        self.register_buffer("scale", torch.ones(1))


class Bare(torch.nn.Module):
    """No ``official_prefixes`` / ``official_ignored``: the defaults apply (strip ``module.``, ignore nothing)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))


def full(value, *shape):
    return torch.full(shape, float(value))


def official():
    """An official-style state dict of Tiny with recognisable values."""
    return {"module.v.lin.weight": full(7, 3, 2), "module.v.lin.bias": full(8, 3), "module.v.scale": full(9, 1)}


# --- LoadReport --------------------------------------------------------------------------------------------

def test_report_ok_needs_no_missing_unexpected_or_mismatched_key():
    assert LoadReport().ok
    assert LoadReport(loaded=["a"], ignored=["b"]).ok          # ignored keys are not a problem
    assert not LoadReport(missing=["a"]).ok
    assert not LoadReport(unexpected=["a"]).ok
    assert not LoadReport(mismatched=[("a", (1,), (2,))]).ok


def test_report_text():
    report = LoadReport(loaded=["x", "y"], missing=["m1", "m2"], unexpected=["u"],
                        mismatched=[("k", [4, 2], [3, 2])], ignored=["head.0.weight"])
    assert str(report) == (
        "loaded 2 tensors; missing 2, unexpected 1, shape-mismatched 1, ignored 1\n"
        "  missing:    m1\n"
        "  missing:    m2\n"
        "  unexpected: u\n"
        "  mismatched: k: checkpoint (4, 2) vs model (3, 2)\n"
        "  ignored:    head.0.weight")
    assert str(LoadReport()) == "loaded 0 tensors; missing 0, unexpected 0, shape-mismatched 0, ignored 0"


# --- read_state_dict ---------------------------------------------------------------------------------------

def test_read_state_dict_unwraps_the_first_container_key_holding_a_dict():
    inner, other = {"a": torch.ones(1)}, {"b": torch.ones(1)}
    assert read_state_dict({"state_dict": inner, "model": other}) is inner
    assert read_state_dict({"model": inner, "model_state_dict": other}) is inner
    assert read_state_dict({"model_state_dict": inner}) is inner
    # a container key holding a tensor is an ordinary key
    flat = {"model": torch.ones(2), "state_dict": torch.zeros(1)}
    assert read_state_dict(flat) is flat
    # a container key holding something else than a dict is passed over for the next one
    assert read_state_dict({"state_dict": [1], "model": inner}) is inner
    with pytest.raises(TypeError) as err:
        read_state_dict({"state_dict": [1], "a": torch.ones(1)})
    assert str(err.value) == "state dict entries must be tensors; not tensors: ['state_dict']"


def test_read_state_dict_names_at_most_five_non_tensors():
    sd = {f"k{i}": i for i in range(7)}
    sd["t"] = torch.ones(1)
    with pytest.raises(TypeError) as err:
        read_state_dict(sd)
    assert str(err.value) == "state dict entries must be tensors; not tensors: ['k0', 'k1', 'k2', 'k3', 'k4']"


def test_read_state_dict_refuses_other_types_by_name():
    with pytest.raises(TypeError) as err:
        read_state_dict([("a", torch.ones(1))])
    assert str(err.value) == "expected a checkpoint path or a state dict, got list"


def test_read_state_dict_from_files(tmp_path):
    torch.save({"model_state_dict": {"a": full(3, 2)}, "epoch": 4}, tmp_path / "ck.pt")
    for path in (tmp_path / "ck.pt", str(tmp_path / "ck.pt")):          # a Path or a str
        sd = read_state_dict(path)
        assert list(sd) == ["a"] and torch.equal(sd["a"], full(3, 2))
    with pytest.raises(ValueError) as err:
        read_state_dict(tmp_path / "none.pt")
    assert str(err.value) == f"checkpoint file not found: {tmp_path / 'none.pt'}"
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(ValueError) as err:
        read_state_dict(tmp_path / "folder.pt")
    assert str(err.value) == f"checkpoint file not found: {tmp_path / 'folder.pt'}"


def test_read_state_dict_maps_a_gpu_checkpoint_onto_the_cpu(tmp_path, monkeypatch):
    """A file whose tensors were saved from a GPU (storage location ``cuda:0``) loads onto the CPU, also on a
    machine without CUDA."""
    import torch.serialization as serialization

    with monkeypatch.context() as m:   # tag every storage "cuda:0" while saving, as a GPU run would
        m.setattr(serialization, "_package_registry", list(serialization._package_registry))
        serialization.register_package(0, lambda storage: "cuda:0", lambda obj, location: None)
        torch.save({"a": torch.arange(3.0)}, tmp_path / "gpu.pt")
    sd = read_state_dict(tmp_path / "gpu.pt")
    assert sd["a"].device == torch.device("cpu") and torch.equal(sd["a"], torch.arange(3.0))


class _Opaque:
    """A picklable object that is neither a tensor nor a plain container."""


def test_read_state_dict_refuses_pickled_objects_unless_trusted(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"a": full(1, 2), "extra": _Opaque()}, path)
    with pytest.raises(ValueError) as err:
        read_state_dict(path)                            # the default is the safe loader
    assert str(err.value) == (
        f"{path} pickles Python objects besides tensors and plain containers (a training checkpoint with its "
        "own objects), which the safe loader refuses: if you trust the file, pass trusted=True to read it "
        "with full unpickling")
    with pytest.raises(ValueError, match="pass trusted=True"):
        load_official(Tiny(), path)                      # load_official reads it safely by default too
    # trusted: the object is read, and then refused as a non-tensor entry
    with pytest.raises(TypeError) as err:
        read_state_dict(path, trusted=True)
    assert str(err.value) == "state dict entries must be tensors; not tensors: ['extra']"


def test_read_state_dict_names_a_file_it_cannot_read(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError) as err:
        read_state_dict(empty)
    assert str(err.value).startswith(f"cannot read checkpoint {empty}: ")
    assert isinstance(err.value.__cause__, EOFError)
    # with trusted=True an unpickling error is a read error too (no advice to pass trusted=True)
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError) as err:
        read_state_dict(text, trusted=True)
    assert str(err.value) == f"cannot read checkpoint {text}: invalid load key, 'n'."


# --- map_official_keys -------------------------------------------------------------------------------------

def test_map_official_keys_strips_prefixes_in_order_and_sets_ignored_keys_apart():
    sd = {"module.v.lin.weight": 1, "v.lin.bias": 2, "module.scale": 3, "v.module.extra": 4,
          "module.v.head.0.weight": 5, "head.12.weight": 6, "module.dist_token": 7, "dist_token_x": 8,
          "head.0.weight.extra": 9, "xhead.0.weight": 10}
    mapped, ignored = map_official_keys(Tiny(), sd)
    assert mapped == {"lin.weight": 1, "lin.bias": 2, "scale": 3, "module.extra": 4, "dist_token_x": 8,
                      "head.0.weight.extra": 9, "xhead.0.weight": 10}
    assert ignored == ["module.v.head.0.weight", "head.12.weight", "module.dist_token"]   # official names


def test_map_official_keys_defaults_strip_module_only():
    mapped, ignored = map_official_keys(Bare(), {"module.w": 1, "v.w": 2, "module.module.w": 3})
    assert mapped == {"w": 1, "v.w": 2, "module.w": 3}
    assert ignored == []


# --- load_official -----------------------------------------------------------------------------------------

def test_load_official_loads_every_tensor():
    model = Tiny()
    sd = official()
    sd["module.v.head.3.weight"] = torch.ones(5)
    report = load_official(model, sd)
    assert report.loaded == ["lin.weight", "lin.bias", "scale"]
    assert (report.missing, report.unexpected, report.mismatched) == ([], [], [])
    assert report.ignored == ["module.v.head.3.weight"]
    assert torch.equal(model.lin.weight, full(7, 3, 2))
    assert torch.equal(model.lin.bias, full(8, 3))
    assert torch.equal(model.scale, full(9, 1))


def bad_checkpoint():
    """Tiny's official keys with lin.bias missing, lin.weight of the wrong shape, one unknown key, one ignored."""
    return {"module.v.lin.weight": full(7, 2, 2), "module.v.scale": full(9, 1),
            "module.v.extra": full(1, 4), "dist_token": full(1, 1)}


def test_load_official_non_strict_sorts_each_key_into_its_list_and_loads_the_rest():
    model = Tiny()
    weight, bias = model.lin.weight.detach().clone(), model.lin.bias.detach().clone()
    report = load_official(model, bad_checkpoint(), strict=False)
    assert report.loaded == ["scale"]
    assert report.missing == ["lin.bias"]
    assert report.unexpected == ["extra"]
    assert report.mismatched == [("lin.weight", (2, 2), (3, 2))]
    assert report.ignored == ["dist_token"]
    assert not report.ok
    assert torch.equal(model.scale, full(9, 1))
    assert torch.equal(model.lin.weight, weight) and torch.equal(model.lin.bias, bias)   # left as they were


def test_load_official_strict_is_the_default_and_loads_nothing():
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_official(model, bad_checkpoint())
    assert str(err.value) == (
        "checkpoint does not match Tiny:\n"
        "loaded 1 tensors; missing 1, unexpected 1, shape-mismatched 1, ignored 1\n"
        "  missing:    lin.bias\n"
        "  unexpected: extra\n"
        "  mismatched: lin.weight: checkpoint (2, 2) vs model (3, 2)\n"
        "  ignored:    dist_token")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_load_official_reads_a_training_file(tmp_path):
    torch.save({"model": official(), "epoch": 3}, tmp_path / "ck.pt")
    model = Tiny()
    assert load_official(model, tmp_path / "ck.pt").loaded == ["lin.weight", "lin.bias", "scale"]
    assert torch.equal(model.lin.bias, full(8, 3))


def test_load_official_logs_its_report_only_when_verbose(caplog):
    sd = {"module.v.lin.weight": full(7, 3, 2), "module.v.scale": full(9, 1), "head.1.weight": full(0, 1)}
    with caplog.at_level(logging.DEBUG, logger="dasslib.models.checkpoints"):
        load_official(Tiny(), sd, strict=False)
        assert caplog.records == []                          # verbose is off by default
        load_official(Tiny(), sd, strict=False, verbose=True)
    assert [(r.name, r.levelno) for r in caplog.records] == [("dasslib.models.checkpoints", logging.INFO)]
    assert caplog.records[0].getMessage() == (
        "loaded 2 tensors; missing 1, unexpected 0, shape-mismatched 0, ignored 1\n"
        "  missing:    lin.bias\n"
        "  ignored:    head.1.weight")


# --- init_dass_from_vmamba ---------------------------------------------------------------------------------

class Stem(torch.nn.Module):
    """The keys init_dass_from_vmamba touches: a conv stem ``patch_embed.0`` and ``classifier.head``."""

    def __init__(self, head_bias=True):
        super().__init__()
        self.patch_embed = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1))
        self.classifier = torch.nn.Module()
        self.classifier.head = torch.nn.Linear(2, 3, bias=head_bias)


def vmamba(rgb):
    return {"patch_embed.0.weight": rgb, "patch_embed.0.bias": torch.tensor([5.0, 6.0]),
            "classifier.head.weight": torch.ones(1000, 2), "classifier.head.bias": torch.ones(1000)}


def test_init_dass_from_vmamba_sums_the_rgb_stem_and_keeps_the_head():
    model = Stem()
    head_w, head_b = model.classifier.head.weight.detach().clone(), model.classifier.head.bias.detach().clone()
    rgb = torch.tensor([1.0, 2.0, 4.0, 10.0, 20.0, 40.0]).reshape(2, 3, 1, 1)
    report = init_dass_from_vmamba(model, {"model": vmamba(rgb)})
    assert report.ok and report.loaded == ["patch_embed.0.weight", "patch_embed.0.bias"]
    assert torch.equal(model.patch_embed[0].weight, torch.tensor([7.0, 70.0]).reshape(2, 1, 1, 1))
    assert torch.equal(model.patch_embed[0].bias, torch.tensor([5.0, 6.0]))
    assert torch.equal(model.classifier.head.weight, head_w) and torch.equal(model.classifier.head.bias, head_b)


def test_init_dass_from_vmamba_keeps_a_one_channel_stem_and_is_strict_by_default():
    model = Stem()
    mono = torch.tensor([3.0, 4.0]).reshape(2, 1, 1, 1)
    assert init_dass_from_vmamba(model, vmamba(mono)).ok
    assert torch.equal(model.patch_embed[0].weight, mono)
    # a stem of another rank is passed on as it is: strict loading refuses its shape, non-strict reports it
    flat = torch.ones(2, 3)
    with pytest.raises(ValueError, match=re.escape("mismatched: patch_embed.0.weight: checkpoint (2, 3)")):
        init_dass_from_vmamba(Stem(), vmamba(flat))
    report = init_dass_from_vmamba(Stem(), vmamba(flat), strict=False)
    assert report.mismatched == [("patch_embed.0.weight", (2, 3), (2, 1, 1, 1))]
    assert report.loaded == ["patch_embed.0.bias"]


def test_init_dass_from_vmamba_sums_any_multi_channel_stem():
    model = Stem()
    two = torch.tensor([1.0, 2.0, 30.0, 40.0]).reshape(2, 2, 1, 1)
    assert init_dass_from_vmamba(model, vmamba(two)).ok
    assert torch.equal(model.patch_embed[0].weight, torch.tensor([3.0, 70.0]).reshape(2, 1, 1, 1))


def test_init_dass_from_vmamba_drops_every_checkpoint_head_key():
    """The checkpoint's ``classifier.head.bias`` is dropped too when the model's head has no bias."""
    report = init_dass_from_vmamba(Stem(head_bias=False), vmamba(torch.ones(2, 3, 1, 1)))
    assert report.ok and report.unexpected == []
    assert report.loaded == ["patch_embed.0.weight", "patch_embed.0.bias"]
