"""dasslib.train.resume: what a checkpoint refuses, when checkpoints are written (steps, minutes, a stop
during evaluation), what a failure saves, and a resume by another number of processes. A 2-3 epoch run of
a linear model on 12-16 random items."""
import os
import re
import signal
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dasslib.train import TrainConfig, atomic_save, fit, load_checkpoint, resume
from dasslib.train import loop as loop_mod

T, F, C = 4, 3, 2


class Net(nn.Module):
    """(B, T, F) -> (B, C); no dropout. ``fail_at``: the training forward call that raises; ``sigint_at``: the
    evaluation forward call that sends this process a SIGINT."""

    def __init__(self, fail_at=None, sigint_at=None):
        super().__init__()
        self.lin = nn.Linear(T * F, C)
        self.fail_at, self.sigint_at, self.calls = fail_at, sigint_at, {True: 0, False: 0}

    def forward(self, x):
        self.calls[self.training] += 1
        if self.training and self.calls[True] == self.fail_at:
            raise ValueError("non-finite activations")
        if not self.training and self.calls[False] == self.sigint_at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.lin(x.flatten(1))


class Items(Dataset):
    """Random items; raises while ``fail`` is set (as a clip that cannot be read). ``skips``: the dataset
    keeps ``skipped_flags`` as one with a skip policy does (none of its items is ever skipped)."""

    def __init__(self, n, skips=False):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, T, F, generator=g), (torch.rand(n, C, generator=g) > 0.5).float()
        self.fail = False
        if skips:
            self.skipped_flags = torch.zeros(n, dtype=torch.bool)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.fail:
            raise ValueError("cannot read clip")
        return self.x[i], self.y[i]


def run(out, model=None, items=None, batch_size=4, on_step=None, **cfg):
    """A 2-epoch run (3 batches an epoch by default) with an 8-item eval set."""
    items = Items(12) if items is None else items
    g = torch.Generator().manual_seed(1)
    ev = DataLoader(TensorDataset(torch.randn(8, T, F, generator=g), (torch.rand(8, C, generator=g) > 0.5).float()),
                    batch_size=4)
    torch.manual_seed(0)
    base = dict(epochs=2, lr=1e-2, warmup_steps=1, wa=False, progress=False)
    return fit(model or Net(), DataLoader(items, batch_size=batch_size, shuffle=True), ev,
               TrainConfig(**{**base, **cfg}), out, on_step=on_step)


def stop_at(step):
    def on_step(info):
        if info.global_step == step:
            raise KeyboardInterrupt
    return on_step


def ckpt(out):
    return out / "checkpoints" / "last.pt"


def stopped(out, step=4, **kw):
    """The checkpoint of a run stopped (KeyboardInterrupt) after global step ``step``."""
    with pytest.raises(KeyboardInterrupt):
        run(out, on_step=stop_at(step), **kw)
    return load_checkpoint(ckpt(out))


def record_saves(monkeypatch):
    """(global step, finished) of every checkpoint written from here on."""
    steps, real = [], resume.atomic_save
    monkeypatch.setattr(resume, "atomic_save", lambda state, *a, **k: (
        steps.append((state["global_step"], state["finished"])), real(state, *a, **k)))
    return steps


def test_resume_refuses_another_version_task_or_batch_count(tmp_path):
    ck, path = stopped(tmp_path), ckpt(tmp_path)
    atomic_save({**ck, "version": 2}, path, checksum=True)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: unsupported checkpoint version 2$"):
        run(tmp_path)
    atomic_save({**ck, "task": "multiclass"}, path, checksum=True)
    with pytest.raises(ValueError) as err:
        run(tmp_path)
    assert str(err.value) == (f"cannot resume {path}: the run's settings changed (task: now 'multilabel', "
                              "checkpoint 'multiclass'); pass resume=False or use another out_dir")
    atomic_save(ck, path, checksum=True)
    with pytest.raises(ValueError) as err:
        run(tmp_path, batch_size=6)  # 2 batches an epoch instead of 3
    assert str(err.value) == (f"cannot resume {path}: the run's settings changed (batches per epoch: now 2, "
                              "checkpoint 3, batch_size: now 6, checkpoint 4); pass resume=False or use another "
                              "out_dir")
    assert load_checkpoint(path)["global_step"] == 4  # refusals leave the checkpoint as it was


class Configured(Net):
    """A model with a config dataclass, as dasslib's models have (speed options live there)."""

    def __init__(self, chunk):
        from dataclasses import make_dataclass

        super().__init__()
        self.cfg = make_dataclass("Cfg", [("chunk", int)])(chunk)


def test_resume_leaves_the_model_config_to_load_state_dict(tmp_path):
    stopped(tmp_path, model=Configured(chunk=64))
    res = run(tmp_path, model=Configured(chunk=128))  # e.g. another scan chunk: the weights load, the run goes on
    assert res.history["step"].tolist() == [3, 6]


def test_resume_by_another_number_of_processes_reseeds(tmp_path, monkeypatch):
    ck, path = stopped(tmp_path, seed=3), ckpt(tmp_path)
    atomic_save({**ck, "rng": ck["rng"] * 2, "world_size": 2}, path, checksum=True)  # as if 2 ranks wrote it
    seeds, real = [], resume.seed_everything
    monkeypatch.setattr(resume, "seed_everything", lambda s, *a, **k: (seeds.append(s), real(s, *a, **k)))
    with pytest.warns(UserWarning) as record:
        res = run(tmp_path, seed=3)
    assert [str(w.message) for w in record if "processes" in str(w.message)] == [
        "checkpoint written by 2 processes, resumed by 1: random streams are reseeded, the run will not replay "
        "exactly"]
    assert seeds == [3 + 0 + 7919 * (4 + 1)]  # seed + rank + 7919 * (the next step)
    assert res.history["step"].tolist() == [3, 6]


def same_rng(a, b):
    return (a["python"] == b["python"] and torch.equal(a["torch"], b["torch"])
            and torch.equal(a["numpy"][1], b["numpy"][1]) and a["numpy"][2:] == b["numpy"][2:])


def test_a_failure_right_after_resuming_saves_the_state_it_resumed(tmp_path):
    items = Items(12)
    ck, path = stopped(tmp_path, items=items), ckpt(tmp_path)
    items.fail = True  # the first item of the resumed epoch cannot be read
    with pytest.warns(UserWarning) as record, pytest.raises(ValueError, match="cannot read clip"):
        run(tmp_path, items=items)
    assert [str(w.message) for w in record if "training failed" in str(w.message)] == [
        f"training failed after 4 steps: state saved to {path}; fix the cause and rerun to resume"]
    again = load_checkpoint(path)
    assert (again["epoch"], again["batch"], again["global_step"]) == (1, 1, 4)
    assert len(again["rng"]) == 1 and same_rng(again["rng"][0], ck["rng"][0])
    assert all(torch.equal(again["model"][k], v) for k, v in ck["model"].items())


def test_a_failure_inside_a_step_keeps_the_last_checkpoint(tmp_path):
    with pytest.warns(UserWarning) as record, pytest.raises(ValueError, match="non-finite"):
        run(tmp_path, model=Net(fail_at=5))  # the second step of epoch 2
    assert [str(w.message) for w in record if "training failed" in str(w.message)] == [
        "training failed inside a step (or under DDP): the last checkpoint is kept as it was"]
    assert load_checkpoint(ckpt(tmp_path))["global_step"] == 3  # epoch 1's end


def test_a_failure_whose_state_cannot_be_saved_raises_the_failure(tmp_path, monkeypatch):
    items, real = Items(12), resume.atomic_save

    def save(state, *a, **k):
        if items.fail:
            raise OSError(28, "No space left on device")
        return real(state, *a, **k)

    def break_at_4(info):
        if info.global_step == 4:
            items.fail = True  # the next item fails, and so does the disk

    monkeypatch.setattr(resume, "atomic_save", save)
    with pytest.warns(UserWarning) as record, pytest.raises(ValueError, match="cannot read clip"):
        run(tmp_path, items=items, on_step=break_at_4)
    assert [str(w.message) for w in record if "training failed" in str(w.message)] == [
        "training failed and its state could not be saved either: [Errno 28] No space left on device"]
    assert load_checkpoint(ckpt(tmp_path))["global_step"] == 3


def test_checkpoints_every_n_steps_and_at_epoch_ends(tmp_path, monkeypatch):
    steps = record_saves(monkeypatch)
    run(tmp_path, checkpoint_every_steps=2)  # 3 steps an epoch: step 6 is an epoch end, saved as one
    assert steps == [(2, False), (3, False), (4, False), (6, False), (6, True)]  # then the finished run


class _Clock:
    """The ``time`` module with a monotonic clock the test sets."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


def test_resume_of_a_skipping_dataset_that_skipped_nothing(tmp_path):
    ck = stopped(tmp_path, items=Items(12, skips=True))
    assert ck["skipped_items"] == []
    res = run(tmp_path, items=Items(12, skips=True))
    assert res.history["skipped_clips"].tolist() == [0, 0]


def test_checkpoints_every_n_minutes(tmp_path, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(resume, "time", clock)
    monkeypatch.setattr(loop_mod, "time", clock)
    steps = record_saves(monkeypatch)

    def tick(info):
        clock.now = 15.0 * info.global_step  # every step takes 15 s

    run(tmp_path, items=Items(16), on_step=tick, checkpoint_every_minutes=0.5)
    # 4 steps an epoch: 30 s after the start at step 2, then epoch 1's end (step 4, at 60 s), 30 s after it at
    # step 6, epoch 2's end, the finished run
    assert steps == [(2, False), (4, False), (6, False), (8, False), (8, True)]


def test_a_stop_during_evaluation_saves_at_the_epoch_end(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, model=Net(sigint_at=2))  # during epoch 1's last eval batch
    ck = load_checkpoint(ckpt(tmp_path))
    assert (ck["epoch"], ck["batch"], ck["global_step"], len(ck["history"])) == (1, 0, 3, 1)
    assert signal.getsignal(signal.SIGINT) is before  # the handler is given back


def test_a_finished_run_checkpoints_its_last_epoch_weights_not_the_averaged_ones(tmp_path):
    res = run(tmp_path, wa=True, wa_start=1)
    ck = load_checkpoint(ckpt(tmp_path))
    final = torch.load(tmp_path / "model_final.pt", weights_only=True)
    averaged = torch.load(tmp_path / "model_wa.pt", weights_only=True)
    assert ck["finished"] and res.wa is not None
    assert all(torch.equal(ck["model"][k], final[k]) for k in final)
    assert not torch.equal(ck["model"]["lin.weight"], averaged["lin.weight"])  # what the model holds at the end
