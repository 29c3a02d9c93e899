"""Data layer: audio I/O, kaldi fbank, AudioSet-style datafiles, datasets, augmentation,
statistics and the embedded synthetic dataset.

Names are imported from their submodules on first use, so ``import dasslib.data`` is cheap.
"""
from .._lazy import lazy_namespace

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
__getattr__, __dir__, __all__ = lazy_namespace(__name__, _EXPORTS)
