"""The plateau rule (dasslib.train.plateau) and the loop's early stop on it: decision, resumption,
weight averaging when the run stops early, what metrics.json records."""
import json
import math

import pytest
import torch
from test_train import TinyNet, loaders, small_cfg

from dasslib.train import TrainConfig, fit
from dasslib.train.plateau import describe_stop, plateau_state


def test_rule_counts_epochs_since_the_last_real_improvement():
    s = plateau_state([0.1, 0.2, 0.25, 0.25, 0.24], patience=2)
    assert (s.best, s.best_epoch, s.stale, s.stop) == (0.25, 3, 2, True)
    # min_delta: +0.005 steps are not improvements, the reference stays at epoch 2's value
    s = plateau_state([0.1, 0.2, 0.205, 0.209, 0.2099], patience=3, min_delta=0.01)
    assert (s.best, s.best_epoch, s.stale, s.stop) == (0.2, 2, 3, True)
    # slow but steady gains above min_delta never stop
    assert not plateau_state([0.1 + 0.02 * i for i in range(20)], patience=1, min_delta=0.01).stop
    # losses go down; NaN is never an improvement
    s = plateau_state([1.0, 0.5, math.nan, 0.6], patience=2, lower=True)
    assert (s.best, s.best_epoch, s.stop) == (0.5, 2, True)
    assert not plateau_state([0.3, 0.2, 0.1], patience=None).stop
    with pytest.raises(ValueError, match="min_delta"):
        plateau_state([0.1], patience=1, min_delta=-1)


def test_describe_stop():
    s = plateau_state([0.2, 0.1, 0.1], patience=2)
    assert describe_stop(3, 10, s, "mAP") == {"reason": "plateau", "epochs": 3, "metric": "mAP",
                                              "best_epoch": 1, "stale_epochs": 2}
    assert describe_stop(10, 10, None, "mAP") == {"reason": "fixed_epochs", "epochs": 10, "cap": 10}
    assert describe_stop(10, 10, plateau_state([0.1] * 10, 20), "mAP", 20)["reason"] == "epoch_cap"


def test_config_checks_patience_and_min_delta():
    assert TrainConfig(patience="3", min_delta="1e-3").patience == 3
    for bad in (dict(patience=0), dict(patience=1.5), dict(min_delta=-0.1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)


def _run(out_dir, on_step=None, **kw):
    torch.manual_seed(0)
    train, ev = loaders()
    return fit(TinyNet(), train, ev, small_cfg(**kw), out_dir, on_step=on_step)


# lr 1e-9: the weights barely move, so eval mAP is flat from the first epoch on
FLAT = dict(lr=1e-9, epochs=12, patience=2, wa_start=2)


def test_fit_stops_on_the_plateau_and_says_so(tmp_path):
    result = _run(tmp_path, **FLAT)
    assert len(result.history) == 3  # the best at epoch 1, then 2 epochs without improvement
    assert result.stopped == {"reason": "plateau", "epochs": 3, "metric": "mAP", "best_epoch": 1,
                              "stale_epochs": 2}
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["stopped"] == result.stopped
    assert result.wa is not None and (tmp_path / "model_wa.pt").is_file()  # epochs 2..3 averaged
    assert (tmp_path / "best_model.pt").is_file() and result.best["epoch"] == 1


def test_fit_without_plateau_runs_to_the_cap(tmp_path):
    result = _run(tmp_path, epochs=3, patience=50)
    assert len(result.history) == 3 and result.stopped["reason"] == "epoch_cap"
    assert result.stopped["cap"] == 3
    assert _run(tmp_path / "fixed", epochs=2).stopped["reason"] == "fixed_epochs"  # no rule


def test_stop_before_weight_averaging_keeps_the_last_weights(tmp_path):
    with pytest.warns(UserWarning, match="before weight averaging"):
        result = _run(tmp_path, **{**FLAT, "wa_start": 6})
    assert len(result.history) == 3 and result.wa is None
    assert not (tmp_path / "model_wa.pt").exists()
    assert result.metrics == result.final
    again = _run(tmp_path, **{**FLAT, "wa_start": 6})  # the finished run, returned as stored
    assert again.stopped == result.stopped and not (tmp_path / "model_wa.pt").exists()


def test_resumed_run_stops_where_the_uninterrupted_one_did(tmp_path):
    whole = _run(tmp_path / "whole", **FLAT)

    def interrupt(info):
        if info.epoch == 1 and info.batch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", on_step=interrupt, **FLAT)
    resumed = _run(tmp_path / "cut", **FLAT)
    cols = [c for c in whole.history.columns if c != "time_s"]
    assert resumed.history[cols].equals(whole.history[cols])
    assert resumed.stopped == whole.stopped


def test_patience_needs_an_eval_loader(tmp_path):
    train, _ = loaders()
    with pytest.raises(ValueError, match="eval_loader"):
        fit(TinyNet(), train, None, small_cfg(patience=2), tmp_path)


def test_rule_edges_found_by_mutation_testing():
    from dasslib.train.plateau import lower_is_better

    assert lower_is_better("eval_loss") and lower_is_better("loss") and not lower_is_better("mAP")
    s = plateau_state([0.3], patience=1)
    assert (s.best, s.best_epoch, s.stale, s.stop) == (0.3, 1, 0, False)
    # an improvement must exceed min_delta strictly, in either direction (exact binary fractions)
    assert plateau_state([2.0, 1.5], patience=1, min_delta=0.5, lower=True).stale == 1
    assert plateau_state([2.0, 1.25], patience=1, min_delta=0.5, lower=True).stale == 0
    assert plateau_state([2.0, 2.25], patience=1, min_delta=0.5, lower=True).stale == 1   # worse loss
    assert plateau_state([1.0, 1.5], patience=1, min_delta=0.5).stale == 1
    cap = describe_stop(5, 5, plateau_state([0.1, 0.2, 0.2, 0.2, 0.2], 9), "mAP", 9)
    assert cap == {"reason": "epoch_cap", "epochs": 5, "cap": 5, "metric": "mAP", "best_epoch": 2,
                   "stale_epochs": 3}
