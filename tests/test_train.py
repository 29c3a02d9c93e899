"""dasslib.train: schedules, sampler, checkpoints, the loop, exact resumption, distillation,
pretraining and DDP (2 CPU processes over gloo). Tiny models and synthetic tensors only."""
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, WeightedRandomSampler

from dasslib.metrics import evaluate
from dasslib.train import (
    ResumableSampler,
    StepDecaySchedule,
    TrainConfig,
    WarmupCosineSchedule,
    WeightAverager,
    atomic_save,
    fit,
    load_checkpoint,
    seed_everything,
)
from dasslib.train import checkpoint as checkpoint_mod
from dasslib.train.optim import build_lr_scheduler, build_optimizer
from dasslib.train.sampler import sampler_from_loader

REPO = Path(__file__).resolve().parents[1]
C, T, F = 3, 6, 4


# ---------------------------------------------------------------- tiny models and data
class TinyNet(nn.Module):
    """(B, T, F) -> (B, C) logits."""

    def __init__(self, dropout=0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(T * F, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, C))

    def forward(self, x):
        return self.net(x)


class NoisyDataset(Dataset):
    """Adds noise from the global torch generator to each item (so resumption must restore it)."""

    def __init__(self, x, y, noise=0.05):
        self.x, self.y, self.noise = x, y, noise

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + self.noise * torch.randn(self.x[i].shape), self.y[i]


def make_tensors(n_train=24, n_eval=18, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_eval, T, F, generator=g)
    w = torch.randn(T * F, C, generator=g)
    y = (x.flatten(1) @ w > 0).float()
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def loaders(noise=0.05, batch_size=4, eval_batch_size=5):
    xt, yt, xe, ye = make_tensors()
    train = DataLoader(NoisyDataset(xt, yt, noise), batch_size=batch_size, shuffle=True)
    return train, DataLoader(TensorDataset(xe, ye), batch_size=eval_batch_size)


def small_cfg(**kw):
    base = dict(epochs=3, lr=5e-3, warmup_steps=3, warmup_every=1, lrscheduler_start=1, lrscheduler_step=1,
                wa_start=2, progress=False)
    return TrainConfig(**{**base, **kw})


def train_run(out_dir, init_seed=0, resume=True, on_step=None, overwrite=False, **cfg_kw):
    torch.manual_seed(init_seed)
    model = TinyNet()
    train, ev = loaders()
    result = fit(model, train, ev, small_cfg(**cfg_kw), out_dir, resume=resume, on_step=on_step, overwrite=overwrite)
    return model, result


def assert_same_run(model_a, res_a, model_b, res_b):
    sa, sb = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    fa = torch.load(res_a.out_dir / "model_final.pt", weights_only=True)
    fb = torch.load(res_b.out_dir / "model_final.pt", weights_only=True)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    pd.testing.assert_frame_equal(res_a.history.drop(columns="time_s"), res_b.history.drop(columns="time_s"))
    assert res_a.final == res_b.final and res_a.wa == res_b.wa and res_a.best == res_b.best


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run; also records the weights at the end of every epoch."""
    ends = []

    def record(info):
        if info.batch == 6:  # 24 items / batch 4
            ends.append({k: v.clone() for k, v in model_holder[0].state_dict().items()})

    model_holder = []
    torch.manual_seed(0)
    model = TinyNet()
    model_holder.append(model)
    train, ev = loaders()
    res = fit(model, train, ev, small_cfg(), tmp_path_factory.mktemp("ref"), on_step=record)
    return model, res, ends


# ---------------------------------------------------------------- schedules and optimizer
def test_step_schedule_follows_the_dass_as20k_recipe():
    spe = 1667  # ~20k clips / batch 12
    s = StepDecaySchedule(spe, warmup_steps=1000, warmup_every=50, start=10, step=5, decay=0.5)
    # AST warm-up: lr = step / 1000 * base, refreshed every 50 steps, 0 for the first 50
    assert [s(0), s(49), s(50), s(999), s(1000)] == [0.0, 0.0, 0.05, 0.95, 1.0]
    per_epoch = [s(e * spe + 1000) for e in range(25)]  # factor in epochs 1..25 (past the warm-up)
    assert per_epoch == [1.0] * 10 + [0.5] * 5 + [0.25] * 5 + [0.125] * 5
    assert s(10 * spe - 1) == 1.0  # the last step of epoch 10 still runs at the base lr


def test_step_schedule_as2m():
    s = StepDecaySchedule(100, warmup_steps=0, start=2, step=1, decay=0.5)
    assert [s(e * 100) for e in range(5)] == [1.0, 1.0, 0.5, 0.25, 0.125]


def test_cosine_schedule():
    s = WarmupCosineSchedule(total_steps=110, warmup_steps=10, min_factor=0.1)
    assert s(0) == 0.0 and s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55)  # halfway down the cosine: (1 + 0.1) / 2
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)


def test_optimizers_and_lambda_scheduler():
    model = TinyNet()
    opt = build_optimizer(model, TrainConfig())
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["betas"] == (0.95, 0.999) and opt.defaults["weight_decay"] == 5e-7
    ssam = TrainConfig(optimizer="adamw", weight_decay=0.05, schedule="cosine", warmup_epochs=2, warmup_every=1,
                       epochs=10, wa=False)
    opt = build_optimizer(model, ssam)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.05
    sched = build_lr_scheduler(opt, ssam, steps_per_epoch=5)  # warm-up 10 steps, 50 in all
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5 * ssam.lr) and lrs[10] == pytest.approx(ssam.lr)
    assert lrs[30] == pytest.approx(ssam.lr * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_weight_decay_groups_follow_the_official_recipes():
    from dasslib import models
    model = models.create("ssam_tiny")
    decay = lambda opt: {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}  # noqa: E731
    names = dict(model.named_parameters())
    # AST / DASS: Adam, every trainable parameter decayed (official Adam(trainables, weight_decay=5e-7))
    adam = decay(build_optimizer(model, TrainConfig()))
    assert len(adam) == len(names) and set(adam.values()) == {5e-7}
    # SSAM: AdamW 0.05 on weights only; biases, norms, tokens, position embedding, A_log and D exempt
    wd = decay(build_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.05, wa=False)))
    assert len(wd) == len(names)
    for name, p in names.items():
        exempt = (p.ndim <= 1 or name.endswith(".bias") or name.endswith(("A_log", "mask_token", "cls_token"))
                  or "pos_embed" in name)
        assert wd[id(p)] == (0.0 if exempt else 0.05), name
    assert any(n.endswith("A_log") for n in names) and any(n.endswith("mask_token") for n in names)
    every = decay(build_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.05, wa=False,
                                                     decay_exempt="none")))
    assert set(every.values()) == {0.05}
    with pytest.raises(ValueError, match="decay_exempt"):
        TrainConfig(decay_exempt="bias")


def test_config_validation():
    with pytest.raises(ValueError, match="did you mean 'lr'"):
        TrainConfig.from_dict({"lrr": 1.0})
    with pytest.raises(ValueError, match="wa_start"):
        TrainConfig(epochs=5, wa_start=6)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    assert TrainConfig(epochs=5, wa_start=1).wa_epoch_range == (1, 5)
    assert TrainConfig.from_dict(TrainConfig(lr=3e-4).to_dict()) == TrainConfig(lr=3e-4)


# ---------------------------------------------------------------- sampler, averaging, checkpoints
def test_resumable_sampler_ranks_and_start():
    s0 = ResumableSampler(10, shuffle=True, num_replicas=3, rank=0, seed=1)
    s1 = ResumableSampler(10, shuffle=True, num_replicas=3, rank=1, seed=1)
    s2 = ResumableSampler(10, shuffle=True, num_replicas=3, rank=2, seed=1)
    parts = [list(s) for s in (s0, s1, s2)]
    assert [len(p) for p in parts] == [4, 4, 4]  # padded to 12
    assert set(sum(parts, [])) == set(range(10))
    full = list(s0)
    s0.set_start(3)
    assert list(s0) == full[3:] and len(s0) == 1
    s0.set_epoch(1)
    assert list(s0) != full and len(list(s0)) == 4  # a new order, from the start again
    seq = ResumableSampler(5, shuffle=False, num_replicas=2, rank=1)
    assert list(seq) == [1, 3, 0]  # arange(5) padded with 0, rank 1 takes the odd positions


def test_sampler_from_loader_modes():
    ds = TensorDataset(torch.zeros(8, 1))
    w = torch.tensor([0.0] * 7 + [1.0])
    weighted = sampler_from_loader(DataLoader(ds, sampler=WeightedRandomSampler(w, 5), batch_size=2))
    assert list(weighted) == [7] * 5
    assert list(sampler_from_loader(DataLoader(ds, batch_size=2))) == list(range(8))
    shuffled = sampler_from_loader(DataLoader(ds, batch_size=2, shuffle=True), seed=3)
    assert sorted(shuffled) == list(range(8)) and list(shuffled) == list(shuffled)  # same epoch, same order
    with pytest.raises(TypeError, match="resume"):
        sampler_from_loader(DataLoader(ds, sampler=[0, 1, 2]))


def test_weight_averager_means_floats_keeps_last_ints():
    avg = WeightAverager()
    for v in (1.0, 2.0, 6.0):
        avg.add({"w": torch.full((2,), v), "n": torch.tensor(int(v))})
    out = avg.average()
    assert torch.equal(out["w"], torch.full((2,), 3.0)) and out["n"].item() == 6 and out["n"].dtype == torch.int64
    with pytest.raises(ValueError, match="keys"):
        avg.add({"w": torch.zeros(2)})


def test_atomic_save_keeps_old_file_when_save_crashes(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"step": 1}, path)
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(checkpoint_mod.os, "replace",
                        lambda a, b: (replaced.append((Path(a), Path(b))), real_replace(a, b)))
    atomic_save({"step": 2}, path)
    (tmp, final), = replaced
    assert tmp.parent == path.parent and tmp != path and final == path and not tmp.exists()

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_mod.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"step": 3}, path)
    assert load_checkpoint(path) == {"step": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


# ---------------------------------------------------------------- the loop
def test_fit_outputs_weight_averaging_and_metrics(reference):
    model, res, ends = reference
    assert len(ends) == 3
    h = res.history
    assert h["epoch"].tolist() == [1, 2, 3] and h["step"].tolist() == [6, 12, 18]
    assert h["lr"].tolist() == pytest.approx([5e-3, 2.5e-3, 1.25e-3])  # lr of each epoch's last step
    assert {"train_loss", "eval_loss", "mAP", "mAUC", "d_prime"} <= set(h.columns)
    saved = pd.read_csv(res.out_dir / "history.csv")
    assert saved["mAP"].tolist() == pytest.approx(h["mAP"].tolist())
    # final weights = the end of epoch 3; averaged weights = mean of the ends of epochs 2 and 3
    final = torch.load(res.out_dir / "model_final.pt", weights_only=True)
    wa = torch.load(res.out_dir / "model_wa.pt", weights_only=True)
    for k in final:
        assert torch.equal(final[k], ends[2][k])
        assert torch.allclose(wa[k], (ends[1][k] + ends[2][k]) / 2, atol=1e-7)
        assert torch.equal(model.state_dict()[k], wa[k])  # the model is left with the averaged weights
    # reported metrics are those of the averaged model on the eval set
    _, _, xe, ye = make_tensors()
    model.eval()
    with torch.no_grad():
        logits = model(xe)
    expected = evaluate(logits, ye)
    assert res.wa["mAP"] == pytest.approx(expected["mAP"]) and res.metrics is res.wa
    assert res.wa["eval_loss"] == pytest.approx(nn.functional.binary_cross_entropy_with_logits(logits, ye).item())
    assert res.final["mAP"] == h["mAP"].iloc[-1]
    assert res.best["epoch"] == int(h["mAP"].idxmax()) + 1


def test_resume_mid_epoch_is_bit_identical(reference, tmp_path):
    ref_model, ref_res, _ = reference

    def stop_at_9(info):
        if info.global_step == 9:  # epoch 2, batch 3 of 6
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(tmp_path, on_step=stop_at_9)
    ck = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (ck["epoch"], ck["batch"], ck["global_step"]) == (1, 3, 9)
    model, res = train_run(tmp_path, init_seed=123)  # other initial weights: the checkpoint must win
    assert_same_run(ref_model, ref_res, model, res)


def test_resume_at_epoch_boundary_before_eval(reference, tmp_path):
    ref_model, ref_res, _ = reference

    def stop_at_6(info):
        if info.global_step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(tmp_path, on_step=stop_at_6)
    ck = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (ck["epoch"], ck["batch"], ck["history"]) == (0, 6, [])  # epoch 1 trained, its eval pending
    model, res = train_run(tmp_path, init_seed=7)
    assert_same_run(ref_model, ref_res, model, res)


class _Terminated(Exception):
    pass


def test_sigterm_saves_then_reraises(reference, tmp_path):
    ref_model, ref_res, _ = reference

    def on_term(signum, frame):
        raise _Terminated

    def term_at_4(info):
        if info.global_step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with pytest.raises(_Terminated):
            train_run(tmp_path, on_step=term_at_4)
        assert signal.getsignal(signal.SIGTERM) is on_term  # our handler was removed again
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["global_step"] == 4
    model, res = train_run(tmp_path, init_seed=5)
    assert_same_run(ref_model, ref_res, model, res)


def run_until_killed(out_dir):
    """Subprocess body: step checkpoints every 4 steps, SIGKILL itself after step 10."""

    def kill_at_10(info):
        if info.global_step == 10:
            os.kill(os.getpid(), signal.SIGKILL)

    train_run(out_dir, on_step=kill_at_10, checkpoint_every_steps=4)


def test_resume_after_sigkill_from_step_checkpoint(reference, tmp_path):
    ref_model, ref_res, _ = reference
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", f"import test_train; test_train.run_until_killed({str(tmp_path)!r})"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ck = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (ck["epoch"], ck["batch"], ck["global_step"]) == (1, 2, 8)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.pt"]
    model, res = train_run(tmp_path, init_seed=9)
    assert_same_run(ref_model, ref_res, model, res)


def test_finished_run_is_returned_without_training(reference, tmp_path):
    first_model, first = train_run(tmp_path)
    steps = []
    model, again = train_run(tmp_path, init_seed=3, on_step=steps.append)
    assert steps == []
    assert_same_run(first_model, first, model, again)


def test_resume_refuses_changed_settings(tmp_path):
    train_run(tmp_path, epochs=1, wa=False)
    with pytest.raises(ValueError, match="lr: now 0.001"):
        train_run(tmp_path, epochs=1, wa=False, lr=1e-3)
    with pytest.raises(FileExistsError, match=r"lr: now 0.001, stored 0.0.*resume=False would replace them"):
        train_run(tmp_path, epochs=1, wa=False, lr=1e-3, resume=False)  # a finished, different run
    _, res = train_run(tmp_path, epochs=1, wa=False, lr=1e-3, resume=False, overwrite=True)  # starting over
    assert len(res.history) == 1


class RecordingTeacher(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(T * F, C)
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.lin(x.flatten(1))


def test_distillation_teacher_runs_in_eval_mode_without_grad(tmp_path):
    torch.manual_seed(0)
    model, teacher = TinyNet(), RecordingTeacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    train, ev = loaders()
    res = fit(model, train, ev, small_cfg(epochs=2, wa=False, loss="kd_kl"), tmp_path, teacher=teacher)
    assert len(teacher.calls) == 12 and set(teacher.calls) == {(False, False)}
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    h = res.history
    assert (h["train_loss"] - 0.5 * h["train_hard"] - 0.5 * h["train_distill"]).abs().max() < 1e-6
    with pytest.raises(ValueError, match="teacher"):
        fit(TinyNet(), train, ev, small_cfg(loss="kd_kl"), tmp_path / "b")
    with pytest.raises(ValueError, match="not a distillation loss"):
        fit(TinyNet(), train, ev, small_cfg(epochs=1, wa=False), tmp_path / "c", teacher=teacher)


def test_multiclass_cross_entropy(tmp_path):
    xt, yt, xe, ye = make_tensors()
    ct, ce = yt.argmax(1), ye.argmax(1)
    torch.manual_seed(0)
    model = TinyNet(dropout=0.0)
    train = DataLoader(TensorDataset(xt, ct), batch_size=4, shuffle=True)
    ends = []  # the weights at the end of each epoch (6 batches)

    def record(info):
        if info.batch == 6:
            ends.append({k: v.clone() for k, v in model.state_dict().items()})

    res = fit(model, train, DataLoader(TensorDataset(xe, ce), batch_size=5),
              small_cfg(wa=False, loss="ce", main_metric="eval_loss", lr=0.2), tmp_path, task="multiclass",
              on_step=record)
    with torch.no_grad():
        logits = model(xe)
    assert res.final["eval_loss"] == pytest.approx(nn.functional.cross_entropy(logits, ce).item(), rel=1e-6)
    assert res.final["acc"] == pytest.approx((logits.argmax(1) == ce).float().mean().item())
    # the best epoch is the first of lowest eval loss, recomputed from each epoch's end weights
    probe = TinyNet(dropout=0.0).eval()
    losses = []
    for state in ends:
        probe.load_state_dict(state)
        with torch.no_grad():
            z = probe(xe).double()
        losses.append(float((z.logsumexp(1) - z.gather(1, ce[:, None])[:, 0]).mean()))  # CE written out
    assert res.history["eval_loss"].tolist() == pytest.approx(losses, rel=1e-5)
    best = min(range(3), key=lambda e: (losses[e], e))
    assert best == 0  # lr 0.2 overshoots: epoch 1 is best, not the last one
    assert res.best["epoch"] == best + 1 and res.best["eval_loss"] == pytest.approx(losses[best], rel=1e-5)
    saved = torch.load(tmp_path / "best_model.pt", weights_only=True)
    assert all(torch.equal(saved[k], ends[best][k]) for k in saved)


class TinyMAE(nn.Module):
    """forward_pretrain: (B, T, F) -> T patches of F values, about half of them masked."""

    def __init__(self):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(F))
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(T * F, 32), nn.ReLU(), nn.Linear(32, T * F))

    def forward_pretrain(self, x):
        mask = torch.rand(x.shape[:2]) < 0.5
        mask[:, 0] = True
        visible = torch.where(mask[..., None], self.mask_token, x)
        return {"pred": self.net(visible).view_as(x), "target": x, "mask": mask}


def test_masked_pretraining_objective(tmp_path):
    xt, _, xe, _ = make_tensors()
    torch.manual_seed(0)
    cfg = small_cfg(epochs=4, lr=1e-2, objective="pretrain", loss="masked_mse", wa=False, main_metric="eval_loss",
                    optimizer="adamw", weight_decay=0.05, schedule="cosine", warmup_steps=2)
    res = fit(TinyMAE(), DataLoader(TensorDataset(xt), batch_size=4, shuffle=True),
              DataLoader(TensorDataset(xe), batch_size=6), cfg, tmp_path)
    losses = res.history["eval_loss"].tolist()
    assert losses[-1] < losses[0] and losses[-1] == res.final["eval_loss"]
    assert res.best["eval_loss"] == min(losses)
    with pytest.raises(TypeError, match="forward_pretrain"):
        fit(TinyNet(), DataLoader(TensorDataset(xt), batch_size=4), None, cfg, tmp_path / "x", resume=False)


def test_pretraining_objective_scores_the_patches_it_is_told():
    """recon_patches "all" (default, official SSAM) averages every patch; "masked" only the masked ones."""
    from dasslib.train.objectives import build_objective
    pred = torch.zeros(2, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [3.0, 3.0]]]).repeat(2, 1, 1)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    out = {"pred": pred, "target": target, "mask": mask}
    for patches, want in (("all", 4.0), ("masked", (1 + 9 + 9) / 3)):
        obj = build_objective(small_cfg(objective="pretrain", loss="masked_mse", recon_patches=patches))
        assert obj.loss(out)[0].item() == pytest.approx(want)
        assert obj.summarize(obj.eval_batch(out))["eval_loss"] == pytest.approx(want)
    assert TrainConfig().recon_patches == "all"
    with pytest.raises(ValueError, match="recon_patches"):
        TrainConfig(recon_patches="visible")


# ---------------------------------------------------------------- DDP: 2 processes over gloo, via the CLI
def build_for_cli(config):
    """CLI builder: deterministic tiny model and tensor data (no dropout, no noise)."""
    xt, yt, xe, ye = make_tensors()
    bs = config["batch_size"]
    return dict(model=TinyNet(dropout=0.0),
                train_loader=DataLoader(TensorDataset(xt, yt), batch_size=bs, shuffle=True),
                eval_loader=DataLoader(TensorDataset(xe, ye), batch_size=4))


def test_ddp_two_processes_match_one_process_with_double_batch(tmp_path):
    cfg = small_cfg(lr=1e-2).to_dict()
    config = {"builder": "test_train:build_for_cli", "out_dir": str(tmp_path / "ddp"), "batch_size": 3,
              "train": {**cfg, "betas": list(cfg["betas"])}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "dasslib.train.cli", "--config", str(path)],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '"metrics"' in proc.stdout

    seed_everything(0)
    single = build_for_cli({"batch_size": 6})
    ref = fit(single["model"], single["train_loader"], single["eval_loader"], small_cfg(lr=1e-2), tmp_path / "one")
    ddp_final = torch.load(tmp_path / "ddp" / "model_final.pt", weights_only=True)
    one_final = torch.load(tmp_path / "one" / "model_final.pt", weights_only=True)
    for k in one_final:
        assert torch.allclose(ddp_final[k], one_final[k], atol=1e-5), k
    ddp_hist = pd.read_csv(tmp_path / "ddp" / "history.csv")
    for col in ("train_loss", "eval_loss", "mAP", "mAUC"):
        assert ddp_hist[col].tolist() == pytest.approx(ref.history[col].tolist(), rel=1e-4), col
    assert ck_world(tmp_path / "ddp") == 2


def ck_world(run_dir):
    ck = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert len(ck["rng"]) == ck["world_size"]  # one RNG state per rank
    return ck["world_size"]


# ---------------------------------------------------------------- resumption with averaging started, AMP and clipping
class LoudNet(TinyNet):
    """TinyNet on inputs scaled by 30: under fp16 autocast its first backward passes overflow at the
    GradScaler's initial scale (65536), so the scaler skips those steps and backs off to 8192."""

    def forward(self, x):
        return self.net(x * 30.0)


def run_variant(out_dir, net=TinyNet, init_seed=0, on_step=None, **cfg_kw):
    torch.manual_seed(init_seed)
    model = net()
    train, ev = loaders()
    return model, fit(model, train, ev, small_cfg(**cfg_kw), out_dir, on_step=on_step)


def interrupt_and_resume(tmp_path, step, net=TinyNet, **cfg_kw):
    """An uninterrupted run, and the same run stopped after global step ``step`` then resumed from
    other initial weights. Returns (reference model, its result, resumed model, its result, the checkpoint)."""
    ref_model, ref_res = run_variant(tmp_path / "ref", net, **cfg_kw)

    def stop(info):
        if info.global_step == step:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_variant(tmp_path / "run", net, on_step=stop, **cfg_kw)
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    model, res = run_variant(tmp_path / "run", net, init_seed=11, **cfg_kw)
    return ref_model, ref_res, model, res, ck


def test_resume_after_weight_averaging_started_with_bf16_autocast(tmp_path):
    # wa_start=1: the end of epoch 1 is in the averager when the run stops in epoch 2 (step 9 of 18)
    ref_model, ref_res, model, res, ck = interrupt_and_resume(tmp_path, 9, amp="bf16", wa_start=1)
    assert (ck["epoch"], ck["batch"], ck["averager"]["count"]) == (1, 3, 1)
    assert_same_run(ref_model, ref_res, model, res)
    # bf16 autocast was in effect: the same run in float32 ends with other weights
    fp32_model, _ = run_variant(tmp_path / "fp32", wa_start=1)
    assert not torch.equal(fp32_model.net[1].weight, model.net[1].weight)


def test_resume_restores_the_fp16_grad_scaler_and_the_averager(tmp_path):
    if not torch.amp.is_autocast_available("cpu"):
        pytest.skip("no CPU autocast in this torch")
    with pytest.warns(UserWarning, match="lr_scheduler.step"):  # the scaler skips the overflowing steps
        ref_model, ref_res, model, res, ck = interrupt_and_resume(tmp_path, 14, LoudNet, amp="fp16", wa_start=2)
    # epoch 3, batch 2: epoch 2's end is averaged; the scaler backed off from 65536 to 8192 in epoch 1.
    # A resume that restarted the scaler at 65536 would skip step 15 and end elsewhere.
    assert (ck["epoch"], ck["batch"], ck["averager"]["count"]) == (2, 2, 1)
    assert ck["scaler"]["scale"] == 8192.0
    assert_same_run(ref_model, ref_res, model, res)


def test_resume_mid_epoch_with_gradient_clipping(tmp_path):
    ref_model, ref_res, model, res, ck = interrupt_and_resume(tmp_path, 9, grad_clip=0.05, wa_start=1)
    assert (ck["epoch"], ck["batch"], ck["averager"]["count"]) == (1, 3, 1)
    assert_same_run(ref_model, ref_res, model, res)
    # the clipping bites: without it the run ends with other weights
    free_model, _ = run_variant(tmp_path / "free", wa_start=1)
    assert not torch.equal(free_model.net[1].weight, model.net[1].weight)
