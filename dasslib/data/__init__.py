"""Data layer: audio I/O, kaldi fbank, AudioSet-style datafiles, datasets, augmentation,
statistics and the embedded synthetic dataset.

Names are imported from their submodules on first use, so ``import dasslib.data`` is cheap.
"""
import importlib

_EXPORTS = {
    "audio": ("load_audio",),
    "frames": ("FRAME_SHIFT_MS", "FRAMES_PER_SECOND"),
    "fbank": ("AUDIOSET_MEAN", "AUDIOSET_STD", "SAMPLE_RATE", "num_frames", "pad_or_crop",
              "wav2fbank", "normalize_fbank"),
    "datafile": ("LabelSet", "Entry", "read_label_csv", "write_label_csv", "read_datafile",
                 "write_datafile", "validate_datafile"),
    "augment": ("sample_mixup_lambda", "mixup_waveforms", "spec_augment", "fbank_noise"),
    "dataset": ("AudioConf", "AudioDataset"),
    "stats": ("compute_norm_stats", "balanced_sample_weights"),
    "synth": ("make_embedded_dataset", "CLASSES", "SIZES"),
    "niah": ("total_frames", "insert_index", "noise_num_samples", "make_needle", "haystack_noise",
             "build_haystack", "haystack_waveform", "NiahDataset", "DatasetNeedles"),
    "babble": ("synth_babble", "synth_talker", "load_babble"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_WHERE))


__all__ = sorted(_WHERE)
