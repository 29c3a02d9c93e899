"""Reliability promises, through the public entry points: input contracts of `predict`, atomic and
repairable run directories, runs that refuse to clobber other results, checked configurations and
checksummed checkpoints. Tiny models and synthetic tensors only."""
import errno
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dasslib import inference
from dasslib import models as M
from dasslib.data import validate_datafile, write_datafile, write_label_csv
from dasslib.inference import predict
from dasslib.train import TrainConfig, atomic_save, fit, load_checkpoint
from dasslib.train import checkpoint as checkpoint_mod

# ---------------------------------------------------------------- predict: input contracts
AST_TINY = dict(embed_dim=16, depth=1, num_heads=2, input_fdim=32, input_tdim=64, num_classes=3)
DASS_TINY = dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=3)


@pytest.fixture(scope="module")
def ast_model():
    torch.manual_seed(0)
    return M.create("ast_tiny", **AST_TINY).eval()


@pytest.fixture(scope="module")
def dass_model():
    torch.manual_seed(0)
    return M.create("dass_small", **DASS_TINY).eval()


def test_predict_knows_the_mel_bins_of_ast_and_aum(ast_model):
    assert inference.expected_mel_bins(ast_model) == 32
    assert inference.expected_mel_bins(M.create("aum_tiny", depth=1, embed_dim=16, input_fdim=48, num_classes=3)) == 48
    assert predict(ast_model, torch.randn(64, 32)).shape == (3,)


def test_predict_rejects_a_different_mel_count(ast_model):
    with pytest.raises(ValueError, match=r"expects 32 mel bins: expected \(T, 32\) or \(B, T, 32\)"):
        predict(ast_model, torch.randn(2, 64, 16))


def test_predict_rejects_a_transposed_fbank(ast_model, dass_model):
    with pytest.raises(ValueError, match="looks transposed"):
        predict(ast_model, torch.randn(32, 64))
    # DASS runs on any width, but no fbank is 1024 mel bins wide
    with pytest.raises(ValueError, match="transposed fbank"):
        predict(dass_model, torch.randn(128, 1024))


def test_predict_rejects_a_raw_waveform(ast_model, dass_model):
    for model in (ast_model, dass_model):
        with pytest.raises(ValueError, match="raw waveform"):
            predict(model, torch.randn(1, 160000))
    with pytest.raises(TypeError, match="floating-point fbank"):
        predict(dass_model, torch.zeros(1, 16000, dtype=torch.int16))


def test_predict_checks_declared_mel_bins_through_wrappers(dass_model):
    wrapped = nn.Sequential()
    wrapped.module = dass_model  # as DistributedDataParallel / DataParallel hold it
    dass_model.num_mel_bins = 64
    try:
        assert inference.expected_mel_bins(wrapped) == 64
        with pytest.raises(ValueError, match="expects 64 mel bins"):
            predict(dass_model, torch.randn(64, 128))
        assert predict(dass_model, torch.randn(64, 64)).shape == (3,)
    finally:
        del dass_model.num_mel_bins


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_predict_rejects_non_finite_input(ast_model, bad):
    x = torch.randn(2, 64, 32)
    x[1, 5, 3] = bad
    with pytest.raises(ValueError, match="1 non-finite value"):
        predict(ast_model, x)


def test_predict_rejects_non_float_dtypes(ast_model):
    for dtype in (torch.int64, torch.bool, torch.complex64):
        with pytest.raises(TypeError, match=f"got dtype {dtype}"):
            predict(ast_model, torch.ones(64, 32, dtype=dtype))
    assert predict(ast_model, torch.randn(64, 32, dtype=torch.float64)).dtype == torch.float32


# ---------------------------------------------------------------- training runs: tiny model and data
C, T, F = 3, 6, 4


class TinyNet(nn.Module):
    """(B, T, F) -> (B, C) logits."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(T * F, 8), nn.ReLU(), nn.Linear(8, C))

    def forward(self, x):
        return self.net(x)


def run(out_dir, resume=True, overwrite=False, on_step=None, **cfg_kw):
    """A 2-epoch run (weight averaging over both); returns (model, FitResult)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, T, F, generator=g), (torch.rand(20, C, generator=g) > 0.5).float()
    train = DataLoader(TensorDataset(x[:12], y[:12]), batch_size=4, shuffle=True)
    ev = DataLoader(TensorDataset(x[12:], y[12:]), batch_size=4)
    base = dict(epochs=2, lr=1e-2, warmup_steps=1, warmup_every=1, lrscheduler_start=1, wa_start=1, progress=False)
    torch.manual_seed(0)
    model = TinyNet()
    extra = {"overwrite": True} if overwrite else {}
    return model, fit(model, train, ev, TrainConfig(**{**base, **cfg_kw}), out_dir, resume=resume, on_step=on_step,
                      **extra)


def fail_writes_of(monkeypatch, name):
    """Make every atomic write of the file ``name`` fail as a full disk does (ENOSPC)."""
    real = checkpoint_mod.os.replace

    def replace(src, dst):
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)
    monkeypatch.setattr(checkpoint_mod.os, "replace", replace)


# ---------------------------------------------------------------- every file atomic, finished runs repaired
def test_failed_metrics_write_leaves_no_partial_file_and_rerun_repairs_it(tmp_path, monkeypatch):
    fail_writes_of(monkeypatch, "metrics.json")
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path)
    assert not (tmp_path / "metrics.json").exists()  # no empty or half-written file
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="metrics.json missing or unreadable, rewritten"):
        _, res = run(tmp_path)  # the run is finished: nothing retrains, the file is rebuilt
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["final"] == res.final and stored["wa"] == res.wa and stored["best"] == res.best


@pytest.mark.parametrize("name", ["metrics.json", "run.json"])
def test_failed_write_keeps_the_previous_version(tmp_path, monkeypatch, name):
    run(tmp_path, epochs=1, wa=False)
    path = next(p for p in tmp_path.rglob(name))
    before = path.read_bytes()
    fail_writes_of(monkeypatch, name)
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path, epochs=1, wa=False, resume=False, overwrite=True)
    assert path.read_bytes() == before


def test_finished_run_with_corrupt_files_is_repaired_or_reported(tmp_path):
    _, first = run(tmp_path)
    (tmp_path / "metrics.json").write_text("")
    (tmp_path / "history.csv").write_text("epoch,st")
    (tmp_path / "model_final.pt").write_bytes(b"\0" * 10)
    (tmp_path / "model_wa.pt").unlink()
    (tmp_path / "best_model.pt").unlink()
    with pytest.warns(UserWarning) as record:
        _, again = run(tmp_path)
    text = " ".join(str(w.message) for w in record)
    assert "metrics.json, history.csv, model_final.pt missing or unreadable" in text
    assert "model_wa.pt was missing" in text and "best_model.pt is missing or unreadable and cannot be rebuilt" in text
    assert json.loads((tmp_path / "metrics.json").read_text())["wa"] == first.wa
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "history.csv"), first.history, check_dtype=False)
    final = torch.load(tmp_path / "model_final.pt", weights_only=True)
    assert final.keys() == torch.load(tmp_path / "model_wa.pt", weights_only=True).keys()
    assert again.wa == first.wa and again.final == first.final


# ---------------------------------------------------------------- runs refuse to clobber
def test_rerun_with_other_settings_after_losing_the_checkpoint_refuses(tmp_path):
    _, first = run(tmp_path, progress=True)
    shutil.rmtree(tmp_path / "checkpoints")
    _, again = run(tmp_path)  # the same run again is allowed (progress does not change the result)
    assert again.final == first.final
    shutil.rmtree(tmp_path / "checkpoints")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(FileExistsError, match=r"lr: now 0.001, stored 0.01.*overwrite=True.*another out_dir"):
        run(tmp_path, lr=1e-3)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    _, res = run(tmp_path, lr=1e-3, overwrite=True)
    assert json.loads((tmp_path / "run.json").read_text())["config"]["lr"] == 1e-3
    assert res.history["lr"].tolist() != first.history["lr"].tolist()


def test_resume_false_refuses_to_replace_a_finished_or_different_run(tmp_path):
    _, first = run(tmp_path)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="of a finished run with these settings and resume=False would replace"):
        run(tmp_path, resume=False)
    with pytest.raises(FileExistsError, match=r"lr: now 0.001, stored 0.01.*overwrite=True"):
        run(tmp_path, resume=False, lr=1e-3)
    assert {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    _, again = run(tmp_path, resume=False, overwrite=True)
    assert again.final == first.final  # started over: the same run replayed


def stop_after(step):
    def on_step(info):
        if info.global_step == step:
            raise RuntimeError("stopped by the test")
    return on_step


def test_resume_false_restarts_an_unfinished_run_of_the_same_settings(tmp_path):
    _, ref = run(tmp_path / "ref")
    with pytest.warns(UserWarning, match="state saved"), pytest.raises(RuntimeError, match="stopped by the test"):
        run(tmp_path / "run", on_step=stop_after(4))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["global_step"] == 4
    with pytest.raises(FileExistsError,
                       match=r"checkpoints/last.pt\) of a different run \(lr: now 0.001, stored 0.01\)"):
        run(tmp_path / "run", resume=False, lr=1e-3)  # another run's checkpoint
    steps = []
    _, res = run(tmp_path / "run", resume=False, on_step=steps.append)
    assert steps[0].global_step == 1 and len(steps) == 6  # from the start, not from step 4
    assert res.final == ref.final and res.wa == ref.wa


def test_results_of_an_unknown_run_are_not_replaced(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,mAP\n1,0.5\n")
    with pytest.raises(FileExistsError, match=r"unknown run \(no readable run.json\)"):
        run(tmp_path)
    assert (tmp_path / "history.csv").read_text() == "epoch,mAP\n1,0.5\n"


def test_run_identity_covers_more_than_the_train_config(tmp_path):
    run(tmp_path, epochs=1, wa=False)
    identity = json.loads((tmp_path / "run.json").read_text())
    assert identity["config"] == json.loads(json.dumps(TrainConfig(**{
        **identity["config"], "betas": tuple(identity["config"]["betas"])}).to_dict()))
    assert identity["model"].endswith("TinyNet") and identity["task"] == "multilabel"
    assert identity["train_items"] == 12 and identity["batches_per_epoch"] == 3
    shutil.rmtree(tmp_path / "checkpoints")
    identity["task"] = "multiclass"  # as if the stored results came from another task
    (tmp_path / "run.json").write_text(json.dumps(identity))
    with pytest.raises(FileExistsError, match="task: now 'multilabel', stored 'multiclass'"):
        run(tmp_path, epochs=1, wa=False)
    run(tmp_path, epochs=1, wa=False, overwrite=True)


# ---------------------------------------------------------------- checkpoint checksums
def test_overwritten_checkpoint_bytes_are_reported_with_the_file(tmp_path):
    run(tmp_path, epochs=2, wa=False)
    path = tmp_path / "checkpoints" / "last.pt"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"checkpoint .*last.pt is corrupt: the SHA-256"):
        run(tmp_path, epochs=2, wa=False)
    with pytest.raises(ValueError, match="last.pt is corrupt"):
        load_checkpoint(path)


def test_checksummed_checkpoint_round_trips(tmp_path):
    state = {"w": torch.arange(6.0), "step": 3}
    atomic_save(state, tmp_path / "ck.pt", checksum=True)
    loaded = load_checkpoint(tmp_path / "ck.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["step"] == 3
    atomic_save(state, tmp_path / "plain.pt")  # plain torch.save files still load
    assert load_checkpoint(tmp_path / "plain.pt")["step"] == 3


def build_for_cli(config):
    """CLI builder: the tiny model on ``config["n_train"]`` random items."""
    g = torch.Generator().manual_seed(0)
    n = config["n_train"]
    x, y = torch.randn(n, T, F, generator=g), (torch.rand(n, C, generator=g) > 0.5).float()
    return dict(model=TinyNet(), train_loader=DataLoader(TensorDataset(x, y), batch_size=4))


def test_cli_run_identity_covers_the_whole_run_config(tmp_path):
    from dasslib.train import cli

    config = {"builder": "test_reliability:build_for_cli", "out_dir": str(tmp_path), "n_train": 8, "extra": "a",
              "train": dict(epochs=1, wa=False, warmup_steps=1, progress=False)}
    cli.run(config)
    assert json.loads((tmp_path / "run.json").read_text())["run_info"]["extra"] == "a"
    shutil.rmtree(tmp_path / "checkpoints")
    with pytest.raises(FileExistsError, match="run_info"):
        cli.run({**config, "extra": "b"})
    assert cli.main(["--config", str(write_yaml(tmp_path / "run.yaml", {**config, "extra": "b"})), "--overwrite"]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["run_info"]["extra"] == "b"


def write_yaml(path, config):
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------- configuration: types and ranges
def test_number_like_strings_from_yaml_are_numbers():
    values = yaml.safe_load("lr: 1e-4\nbetas: [0.9, 5e-1]\ngrad_clip: 1e0\nweight_decay: 5e-7\nmin_lr: 1e-6\n")
    assert values["lr"] == "1e-4"  # what PyYAML reads
    cfg = TrainConfig.from_dict(values)
    assert (cfg.lr, cfg.betas, cfg.grad_clip, cfg.weight_decay, cfg.min_lr) == (1e-4, (0.9, 0.5), 1.0, 5e-7, 1e-6)
    assert isinstance(cfg.lr, float) and TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("field, value, message", [
    ("lr", "fast", r"lr must be a number \(> 0.0\), got 'fast'"),
    ("lr", 0, r"lr must be a number \(> 0.0\)"),
    ("grad_clip", "none", r"grad_clip must be a number or None \(> 0.0\), got 'none'"),
    ("weight_decay", -1e-4, "weight_decay must be a number"),
    ("betas", 0.9, r"betas must be two numbers in \[0, 1\)"),
    ("betas", ("0.9", "x"), "betas must be a number"),
    ("betas", (0.9, 1.0), r"betas must be a number \(>= 0.0 and < 1.0\), got 1.0"),
    ("epochs", 2.5, r"epochs must be an int \(>= 1\), got 2.5"),
    ("epochs", True, "epochs must be an int"),
    ("warmup_steps", "ten", "warmup_steps must be an int"),
    ("kd_weight", 1.5, r"kd_weight must be a number \(>= 0.0 and <= 1.0\)"),
    ("seed", -1, "seed must be an int"),
    ("log_every", 0, "log_every must be an int"),
    ("wa", "yes", "wa must be True or False"),
    ("progress", 1, "progress must be True or False"),
    ("main_metric", "", "main_metric must be a non-empty string"),
    ("main_metric", 3, "main_metric must be a non-empty string"),
    ("lr", float("nan"), "lr must be a number"),
])
def test_bad_config_values_are_rejected_by_name(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({field: value})


def test_main_metric_must_be_one_the_objective_reports(tmp_path):
    with pytest.raises(ValueError, match=r"main_metric 'map' is not an evaluation metric .*mAP"):
        run(tmp_path, main_metric="map")
    assert not (tmp_path / "checkpoints").exists()
    _, res = run(tmp_path / "ok", main_metric="eval_loss")
    assert set(res.best) == {"epoch", "eval_loss"}


# ---------------------------------------------------------------- datafiles
def test_validate_datafile_catches_clips_shorter_than_one_frame(tmp_path, wav_writer, tone):
    write_label_csv(tmp_path / "labels.csv", ["/m/a"], ["A"])
    ok = wav_writer("ok.wav", tone(440, 0.5))
    short = wav_writer("short.wav", tone(440, 0.02))  # 320 samples: no 25 ms frame
    write_datafile(tmp_path / "data.json", [(ok, ["/m/a"]), (short, ["/m/a"])])
    for mode in ("header", "decode"):
        problems = validate_datafile(tmp_path / "data.json", tmp_path / "labels.csv", check_audio=mode,
                                     raise_on_error=False)
        assert len(problems) == 1 and "too short: 320 samples at 16000 Hz" in problems[0]
        assert problems[0].endswith("short.wav")


def test_validate_datafile_reports_an_empty_data_list(tmp_path):
    write_label_csv(tmp_path / "labels.csv", ["/m/a"], ["A"])
    (tmp_path / "empty.json").write_text('{"data": []}')
    with pytest.raises(ValueError, match="lists no clips"):
        validate_datafile(tmp_path / "empty.json", tmp_path / "labels.csv")


# ---------------------------------------------------------------- failures mid-epoch
class FailingDataset(TensorDataset):
    """Raises (as a clip that cannot be decoded) on its ``fail_at``-th item read."""

    def __init__(self, *tensors, fail_at=None):
        super().__init__(*tensors)
        self.reads, self.fail_at = 0, fail_at

    def __getitem__(self, i):
        self.reads += 1
        if self.reads == self.fail_at:
            raise ValueError(f"cannot read audio file clip{i}.wav")
        return super().__getitem__(i)


def run_failing(out_dir, fail_at=None):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, T, F, generator=g), (torch.rand(20, C, generator=g) > 0.5).float()
    train = DataLoader(FailingDataset(x[:12], y[:12], fail_at=fail_at), batch_size=4, shuffle=True)
    ev = DataLoader(TensorDataset(x[12:], y[12:]), batch_size=4)
    cfg = TrainConfig(epochs=2, lr=1e-2, warmup_steps=1, warmup_every=1, lrscheduler_start=1, wa_start=1,
                      progress=False)
    torch.manual_seed(0)
    model = TinyNet()
    return model, fit(model, train, ev, cfg, out_dir)


def test_an_exception_mid_epoch_saves_a_resumable_checkpoint(tmp_path):
    ref_model, ref = run_failing(tmp_path / "ref")
    with pytest.warns(UserWarning, match="state saved to"), pytest.raises(ValueError, match="clip"):
        run_failing(tmp_path / "run", fail_at=12 + 6)  # epoch 2, second batch: one step done
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (ck["epoch"], ck["batch"], ck["global_step"]) == (1, 1, 4)
    model, res = run_failing(tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()))
    assert res.final == ref.final and res.wa == ref.wa


class Pool(nn.Module):
    """(B, T, F) -> (B, 3) logits: a linear head on the time-averaged fbank."""

    def __init__(self, mel):
        super().__init__()
        self.head = nn.Linear(mel, 3)

    def forward(self, x):
        return self.head(x.mean(dim=1))


def test_training_survives_a_bad_clip_with_the_skip_policy(toy, tmp_path):
    from dasslib.data import AudioConf, AudioDataset

    broken = next(e.wav for e in AudioDataset(toy["json"], toy["csv"]).entries)
    Path(broken).write_bytes(b"RIFF garbage, not audio")
    conf = AudioConf(target_length=32, num_mel_bins=16, seed=0)
    with pytest.raises(ValueError, match="cannot read audio file"):
        AudioDataset(toy["json"], toy["csv"], conf)[0]
    ds = AudioDataset(toy["json"], toy["csv"], conf, bad_clips="skip")
    cfg = TrainConfig(epochs=2, lr=1e-2, warmup_steps=1, wa=False, progress=False)
    with pytest.warns(UserWarning, match=f"skipped: .*item 0: .*{Path(broken).name}") as record:
        res = fit(Pool(16), DataLoader(ds, batch_size=2, shuffle=True), None, cfg, tmp_path / "run")
    assert len(res.history) == 2 and ds.skipped == {0}
    messages = [str(w.message) for w in record]
    assert sum(m.startswith("skipped: ") for m in messages) == 1  # each clip named once, not every epoch
    assert any("skipped; per epoch 1, 1 (history.csv column skipped_clips)" in m for m in messages)
    assert res.history["skipped_clips"].tolist() == [1, 1]
    assert pd.read_csv(tmp_path / "run" / "history.csv")["skipped_clips"].tolist() == [1, 1]
    x0, y0 = ds[0]
    x1, y1 = ds[1]
    assert torch.equal(x0, x1) and torch.equal(y0, y1)  # the next clip, with its own labels
    with pytest.raises(ValueError, match="bad_clips must be one of"):
        AudioDataset(toy["json"], toy["csv"], conf, bad_clips="ignore")


# ---------------------------------------------------------------- memory errors on every device
class CpuHungry(nn.Module):
    """(B, T, 8) -> (B, 3); inputs longer than ``limit`` frames fail as the CPU allocator does."""

    def __init__(self, limit, error):
        super().__init__()
        self.head, self.limit, self.error = nn.Linear(8, 3), limit, error

    def forward(self, x):
        if x.shape[1] > self.limit:
            raise self.error
        return self.head(x.mean(dim=1))


CPU_OOM = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 85899345920 bytes. Error code 12 (Cannot allocate memory)")


@pytest.mark.parametrize("error", [CPU_OOM, MemoryError()])
def test_cpu_out_of_memory_is_input_too_long(error):
    from dasslib.inference import InputTooLongError, measure

    model = CpuHungry(100, error)
    assert predict(model, torch.randn(50, 8)).shape == (3,)
    with pytest.raises(InputTooLongError, match="an input of 200 frames .* does not fit in memory on cpu"):
        predict(model, torch.randn(200, 8))
    with pytest.raises(InputTooLongError):
        measure(model, 200, num_mel_bins=8)
    other = CpuHungry(100, RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):  # not a memory error
        predict(other, torch.randn(200, 8))


def test_length_scaling_keeps_every_row_on_cpu():
    from dasslib.experiments.niah import length_scaling

    table = length_scaling({"hungry": CpuHungry(150, CPU_OOM)}, [1.0, 2.0], device="cpu", repeats=1,
                           num_mel_bins=8)
    assert table["fits"].tolist() == [True, False]
    assert "does not fit in memory on cpu" in table["note"].iloc[1]


def test_skipped_clips_are_counted_across_workers_and_resumption(toy, tmp_path):
    from dasslib.data import AudioConf, AudioDataset

    broken = AudioDataset(toy["json"], toy["csv"]).entries[2].wav
    Path(broken).write_bytes(b"RIFF garbage, not audio")
    conf = AudioConf(target_length=32, num_mel_bins=16, seed=0)
    cfg = TrainConfig(epochs=2, lr=1e-2, warmup_steps=1, wa=False, progress=False)

    def train(out, workers=0, **kw):
        ds = AudioDataset(toy["json"], toy["csv"], conf, bad_clips="skip")
        loader = DataLoader(ds, batch_size=1, shuffle=True, num_workers=workers)
        torch.manual_seed(0)
        return fit(Pool(16), loader, None, cfg, out, **kw)

    with pytest.warns(UserWarning):
        ref = train(tmp_path / "ref")
    assert ref.history["skipped_clips"].tolist() == [1, 1]
    with pytest.warns(UserWarning, match="skipped_clips"):  # the worker marks the clip, the loop counts it
        assert train(tmp_path / "workers", workers=1).history["skipped_clips"].tolist() == [1, 1]
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="stopped"):
        train(tmp_path / "run", on_step=stop_after(7))  # epoch 2, after its bad clip (4 items per epoch)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["skipped_items"] == [2]
    with pytest.warns(UserWarning):
        res = train(tmp_path / "run")
    pd.testing.assert_frame_equal(res.history.drop(columns="time_s"), ref.history.drop(columns="time_s"))


def test_skip_policy_is_a_checked_run_setting(toy, tmp_path):
    from dasslib.experiments.common import classifier_config
    from dasslib.train import builders

    paths = dict(train_json=toy["json"], eval_json=toy["json"], label_csv=toy["csv"])
    args = (tmp_path, dict(name="dass_small", **DASS_TINY), paths, (0.0, 1.0), {}, {})
    assert "bad_clips" not in classifier_config(*args)["data"]  # the default: earlier runs keep their identity
    config = classifier_config(*args, bad_clips="skip")
    assert config["data"]["bad_clips"] == "skip"
    assert builders.build_audioset(config)["train_loader"].dataset.bad_clips == "skip"
    with pytest.raises(ValueError, match=r"bad_clips must be one of \['raise', 'skip'\], got 'ignore'"):
        classifier_config(*args, bad_clips="ignore")
    config["data"]["bad_clips"] = "Skip"
    with pytest.raises(ValueError, match="data.bad_clips must be one of"):
        builders.build_audioset(config)


def test_niah_sweep_keeps_the_lengths_that_fit():
    from dasslib.experiments.niah import sweep

    class Hungry(CpuHungry):
        def forward(self, x):
            return super().forward(x[..., :8]) + x.mean()  # needles of 8 mel bins

    g = torch.Generator().manual_seed(0)
    needles = [(torch.randn(1024, 8, generator=g), None, torch.tensor([1.0, 0.0, float(i % 2)])) for i in range(4)]
    lengths = [15.0, 30.0, 60.0]  # 1500, 3000, 6000 frames; 3000 and more "run out of memory"
    with pytest.warns(UserWarning, match=r"hungry left out at 30 s and longer: an input of 3000 frames .* on cpu"):
        table = sweep({"hungry": Hungry(2000, CPU_OOM)}, needles, (0.0, 1.0), lengths, device="cpu", fast="off")
    assert table["length_s"].tolist() == [15.0] and table["mAP"].notna().all()


# ---------------------------------------------------------------- memory capped with resource limits
CAPPED = """
import resource, sys, torch
torch.set_num_threads(1)
import dasslib.bench.capacity
if sys.argv[1] == "no-growth":  # as where small probes reuse freed memory: no fit, run lengths instead
    def no_fit(*a, **k):
        raise ValueError("peak memory does not grow with the length, cannot extrapolate")
    dasslib.bench.capacity.fit_memory_model = no_fit  # what fit_and_verify (max_length_that_fits) calls
from dasslib import models as M
from dasslib.host_memory import _status_bytes
from dasslib.inference import InputTooLongError, predict
torch.manual_seed(0)
model = M.create("dass_small", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=3).eval()
predict(model, torch.randn(256, 64))  # warm-up: threads and first-call buffers exist before the cap
x = torch.randn(160000, 64)  # several times what fits under the cap (about 30000 frames)
cap = _status_bytes("VmSize") + 256 * 2**20  # 256 MiB more address space
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.RLIM_INFINITY))
try:  # the plain forward (lean="auto" would retry on DASS's lean path)
    predict(model, x, lean=False)
    sys.exit("160000 frames fitted under the cap")
except InputTooLongError as err:
    print(err)
    fit = err.fit
print("MAX", fit.max_frames)
# half of it fits (near the limit the forked probes' and this process's allocator states differ, and
# the boundary moves from one call to the next), twice does not
predict(model, torch.randn(int(0.5 * fit.max_frames), 64), lean=False)
try:
    predict(model, torch.randn(2 * fit.max_frames, 64), lean=False)
    print("2X FITS")
except InputTooLongError:
    print("2X DOES NOT FIT")
# lean="auto": where the plain forward runs out of memory, the lean path fits
predict(model, torch.randn(2 * fit.max_frames, 64))
print("LEAN FITS")
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak resident memory needs Linux")
@pytest.mark.parametrize("case", ["measured", "no-growth"])
def test_cpu_memory_cap_gives_input_too_long_with_the_largest_length_that_fits(case):
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    # glibc: one malloc arena (each extra one reserves 64 MiB of address space) and a fixed mmap threshold
    # (the dynamic one rises after a free, so later large tensors came from the heap and stayed counted in
    # VmSize after being freed): the room under the cap no longer shrinks with every attempt
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1",
           "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run([sys.executable, "-c", CAPPED, case], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert ("an input of 160000 frames (1600.0 s) does not fit in memory on cpu; largest length measured to fit "
            "at batch size 1: ") in out
    # fitted to the probes' peaks, or (where small probes reused freed memory) found by running lengths
    assert "KiB/frame, fitted to peaks measured at" in out or "found by running lengths from" in out
    if case == "no-growth":
        assert "found by running lengths from" in out
    largest = int(out.split("MAX ")[1].split()[0])
    assert 1000 < largest < 160000 and "2X DOES NOT FIT" in out  # half of it fits (above), twice does not
    assert "LEAN FITS" in out   # the lean DASS path runs twice that under the same cap


@pytest.mark.parametrize("writer", ["label_csv", "datafile", "run_metadata", "table_csv", "figure_png"])
def test_library_writers_are_atomic(tmp_path, monkeypatch, writer):
    """A write that fails at the last step (the rename) leaves the previous file whole and no
    temporary file behind: datafiles, label CSVs and run metadata go through dasslib.atomic."""
    import matplotlib.pyplot as plt

    import dasslib.atomic as atomic
    from dasslib.atomic import atomic_write_csv
    from dasslib.data.datafile import write_datafile, write_label_csv
    from dasslib.display import show_figure
    from dasslib.notebook import save_run_metadata
    path = {"label_csv": tmp_path / "labels.csv", "datafile": tmp_path / "train.json",
            "run_metadata": tmp_path / "run_metadata.json", "table_csv": tmp_path / "table.csv",
            "figure_png": tmp_path / "fig.png"}[writer]
    write = {"label_csv": lambda: write_label_csv(path, ["/m/a"], ["A"]),
             "datafile": lambda: write_datafile(path, [(str(tmp_path / "a.wav"), ["/m/a"])]),
             "run_metadata": lambda: save_run_metadata(tmp_path, note="x"),
             "table_csv": lambda: atomic_write_csv(pd.DataFrame({"a": [1, 2]}), path, index=False),
             "figure_png": lambda: show_figure(plt.figure(figsize=(1, 1)), path)}[writer]
    path.write_text("previous")

    def fail(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        write()
    assert path.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    monkeypatch.undo()
    write()
    assert path.read_bytes() != b"previous"


def test_out_of_memory_os_errors_count_as_out_of_memory():
    """An ENOMEM OSError (a thread or an mmap refused near an address-space cap) in the forked probe, or a
    RuntimeError carrying its message, is out of memory, not a crash of the length search."""
    import errno

    from dasslib.bench.memory import is_oom
    from dasslib.host_memory import peak_growth

    def refused():
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    with pytest.raises(MemoryError, match="out of memory in the measuring process"):
        peak_growth(refused)
    assert is_oom(RuntimeError("OSError(12, 'Cannot allocate memory')"))
    assert not is_oom(RuntimeError("shape mismatch"))
