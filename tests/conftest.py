"""Shared fixtures: a wav writer, a tiny hand-made datafile of tones, a tiny embedded dataset, a
few-step training loop."""
import json
import os
import threading

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F


@pytest.fixture(autouse=True)
def _tqdm_lock_of_its_own(monkeypatch):
    """Progress bars (even disabled ones) take tqdm's class lock, which holds a multiprocessing lock shared
    with forked processes and is taken every 10 s by tqdm's monitor thread. Mutation testing runs the tests
    in forks of one process: a fork killed (timed out) while holding it, or made while the monitor held it,
    stalled every later fork's first progress bar. Each test gets a fresh lock and no monitor thread."""
    import tqdm.auto
    import tqdm.std

    for cls in {tqdm.std.tqdm, tqdm.auto.tqdm}:
        monkeypatch.setattr(cls, "_lock", threading.RLock(), raising=False)
        monkeypatch.setattr(cls, "monitor_interval", 0)


def write_wav(path, data, sr=16000, subtype="PCM_16"):
    """Write ``data`` ((n,) or (n, channels) floats in [-1, 1]) to ``path``; returns the path."""
    path = str(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    sf.write(path, np.asarray(data), sr, subtype=subtype)
    return path


def tone(freq, seconds=1.0, sr=16000, amp=0.5):
    """``(n,)`` float64 sine."""
    t = np.arange(int(round(seconds * sr))) / sr
    return amp * np.sin(2 * np.pi * freq * t)


@pytest.fixture(name="tone")
def tone_fixture():
    """The ``tone(freq, seconds=1.0, sr=16000, amp=0.5)`` function."""
    return tone


@pytest.fixture
def wav_writer(tmp_path):
    """``wav_writer(name, data, sr=16000, subtype="PCM_16") -> path`` inside ``tmp_path``."""
    def writer(name, data, sr=16000, subtype="PCM_16"):
        return write_wav(tmp_path / name, data, sr, subtype)
    return writer


TOY_CLASSES = [("/m/a", "Alpha"), ("/m/b", "Beta, with comma"), ("/m/c", "Gamma")]
# (relative wav, labels, tone frequency Hz, seconds)
TOY_CLIPS = [("clips/0.wav", "/m/a", 300.0, 1.0), ("clips/1.wav", "/m/b", 900.0, 1.2),
             ("clips/2.wav", "/m/a,/m/c", 2000.0, 0.8), ("clips/3.wav", "/m/a", 500.0, 1.0)]


@pytest.fixture
def toy(tmp_path):
    """A 4-clip datafile of tones with relative wav paths and a 3-class label csv.

    Class counts: /m/a 3, /m/b 1, /m/c 1. Returns ``dict(json=..., csv=..., dir=...)``.
    """
    from dasslib.data import write_label_csv
    for wav, _, freq, seconds in TOY_CLIPS:
        write_wav(tmp_path / wav, tone(freq, seconds))
    csv_path = str(tmp_path / "labels.csv")
    write_label_csv(csv_path, [m for m, _ in TOY_CLASSES], [n for _, n in TOY_CLASSES])
    json_path = str(tmp_path / "toy.json")
    with open(json_path, "w") as f:
        json.dump({"data": [{"wav": w, "labels": lab} for w, lab, _, _ in TOY_CLIPS]}, f)
    return {"json": json_path, "csv": csv_path, "dir": str(tmp_path)}


@pytest.fixture(scope="session")
def embedded(tmp_path_factory):
    """A tiny embedded dataset (12 train / 6 eval clips of 10 s), generated once per test run."""
    from dasslib.data import make_embedded_dataset
    return make_embedded_dataset(tmp_path_factory.mktemp("embedded"), n_train=12, n_eval=6,
                                 seed=0, progress=False)


@pytest.fixture
def bce_losses():
    """``bce_losses(model, x, y, lr, steps=5)``: the BCE loss before each of ``steps`` Adam steps on
    the fixed batch (x, y)."""
    def run(model, x, y, lr, steps=5):
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses
    return run


@pytest.fixture
def embedded_copy(embedded, tmp_path):
    """The session's embedded dataset seen through a folder of this test: datafiles, labels and meta copied,
    the clip folders linked. Caches written next to the datafiles (norm_stats' ``train.stats.json``) stay
    here, out of the shared folder that other tests compare byte for byte."""
    import shutil
    from pathlib import Path

    src, root = Path(embedded["root"]), tmp_path / "embedded-copy"
    root.mkdir()
    for item in src.iterdir():
        if item.is_dir():
            (root / item.name).symlink_to(item, target_is_directory=True)
        elif not item.name.endswith(".stats.json"):
            shutil.copy2(item, root / item.name)
    return {k: str(root if k == "root" else root / Path(v).name) for k, v in embedded.items()}
