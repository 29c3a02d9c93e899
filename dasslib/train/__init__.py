"""The training loop shared by all notebooks, its configuration, schedules, checkpoints, resumption
and DistributedDataParallel support. Command line (also under ``torchrun``):
``python -m dasslib.train.cli --config run.yaml``."""
from .averaging import WeightAverager, average_state_dicts, average_weight_files
from .checkpoint import atomic_save, atomic_write_text, load_checkpoint
from .config import TrainConfig
from .loop import FitResult, StepInfo, fit
from .objectives import ClassificationObjective, PretrainObjective, build_objective
from .sampler import ResumableSampler
from .schedules import ConstantSchedule, StepDecaySchedule, WarmupCosineSchedule, build_schedule
from .seeding import make_generator, seed_everything, seed_worker, use_deterministic_algorithms

__all__ = [
    "fit", "FitResult", "StepInfo", "TrainConfig",
    "ClassificationObjective", "PretrainObjective", "build_objective",
    "StepDecaySchedule", "WarmupCosineSchedule", "ConstantSchedule", "build_schedule",
    "WeightAverager", "average_state_dicts", "average_weight_files",
    "atomic_save", "atomic_write_text", "load_checkpoint", "ResumableSampler",
    "seed_everything", "seed_worker", "make_generator", "use_deterministic_algorithms",
]
