"""Training-set statistics: fbank normalization stats and balanced-sampling weights (AST recipe)."""
import dataclasses

import numpy as np
import torch

from .dataset import AudioConf, AudioDataset

__all__ = ["compute_norm_stats", "balanced_sample_weights"]


def compute_norm_stats(datafile, label_csv, conf: AudioConf = AudioConf(),
                       max_items: int | None = None, seed: int = 0, batch_size: int = 16,
                       num_workers: int = 0) -> tuple[float, float]:
    """Mean and std of the un-normalized fbanks of a (training) datafile -> ``(mean, std)``.

    Fbanks are computed as the loader feeds them (padded/cropped to ``conf.target_length``,
    so padding frames count, as in AST's recipe) but without augmentation; the moments are
    pooled over every value exactly (AST averaged per-batch means and stds of its augmented
    training loader). ``max_items`` uses a seeded random subset of that many clips.
    """
    conf = dataclasses.replace(conf, train=False, mean=None, std=None)
    dataset = AudioDataset(datafile, label_csv, conf)
    indices = np.arange(len(dataset))
    if max_items is not None and max_items < len(dataset):
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(len(dataset), max_items, replace=False))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices.tolist()),
                                         batch_size=batch_size, num_workers=num_workers)
    total, total_sq, count = 0.0, 0.0, 0
    for fbank, _ in loader:
        x = fbank.double()
        total += float(x.sum())
        total_sq += float((x * x).sum())
        count += x.numel()
    mean = total / count
    return mean, float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))


def balanced_sample_weights(dataset, label_csv=None) -> np.ndarray:
    """AST balanced-sampling weights ``(N,)`` float64 for ``WeightedRandomSampler``.

    ``dataset`` is an ``AudioDataset``, or a datafile path with its ``label_csv``. Class
    weight ``1000 / (count + 0.01)`` (count = clips labelled with the class); a clip's weight
    is the sum of its classes' weights, so clips of rare classes are drawn more often.
    """
    if not isinstance(dataset, AudioDataset):
        if label_csv is None:
            raise ValueError("balanced_sample_weights needs label_csv with a datafile path")
        dataset = AudioDataset(dataset, label_csv)
    counts = np.zeros(dataset.num_classes)
    for idx in dataset.class_indices:
        counts[idx] += 1
    class_weight = 1000.0 / (counts + 0.01)
    return np.array([class_weight[idx].sum() for idx in dataset.class_indices])
