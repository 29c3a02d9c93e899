"""torch.hub entry points: every model of the dasslib registry.

    model = torch.hub.load("path/to/dasslib", "dass_small", source="local",
                           checkpoint="dass_small_as2m.pth", num_classes=527)

Each entry builds ``dasslib.models.create(name, **overrides)`` and, with ``checkpoint`` (a dasslib
weights file or an official release), loads it with :func:`dasslib.models.load_official` (sizes
from a ``run.json`` beside a dasslib checkpoint unless given); loaded models are in eval mode.
"""
dependencies = ["torch", "torchaudio", "timm", "soundfile"]

from dasslib.models import list_models as _list_models  # noqa: E402


def _entry(name):
    def entry(checkpoint=None, num_classes=None, **overrides):
        from dasslib.tagging.model import load_model

        if num_classes is not None:
            overrides["num_classes"] = num_classes
        if checkpoint is None:
            from dasslib.models import create

            return create(name, **overrides)
        return load_model(name, checkpoint, overrides=overrides)[0]

    entry.__name__ = name
    entry.__doc__ = (f"{name} from the dasslib registry (config overrides as keywords; num_classes: 527, or "
                     f"the run.json beside the checkpoint); checkpoint: weights (official layouts accepted).")
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
