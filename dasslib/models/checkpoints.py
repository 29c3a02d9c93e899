"""Loading official checkpoints (DASS, AST, AuM, ...) into our models, with a key report.

Each model class names how official keys map onto its own: ``official_prefixes`` (stripped in
order when present, e.g. DataParallel's ``module.`` then the wrapper's ``v.``) and
``official_ignored`` (regular expressions for official keys the model does not use, e.g. DeiT's
1000-class heads in the AST checkpoint).
"""
import argparse
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_CONTAINER_KEYS = ("state_dict", "model", "model_state_dict")


@dataclass
class LoadReport:
    """What :func:`load_official` did: keys loaded, and every key it could not load."""
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)       # model keys absent from the checkpoint
    unexpected: list = field(default_factory=list)    # checkpoint keys the model lacks
    mismatched: list = field(default_factory=list)    # (key, checkpoint shape, model shape)
    ignored: list = field(default_factory=list)       # official keys known to be unused

    @property
    def ok(self):
        """True when every model key was loaded and no checkpoint key was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self):
        lines = [f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}, "
                 f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}, "
                 f"ignored {len(self.ignored)}"]
        lines += [f"  missing:    {k}" for k in self.missing]
        lines += [f"  unexpected: {k}" for k in self.unexpected]
        lines += [f"  mismatched: {k}: checkpoint {tuple(a)} vs model {tuple(b)}"
                  for k, a, b in self.mismatched]
        lines += [f"  ignored:    {k}" for k in self.ignored]
        return "\n".join(lines)


def read_state_dict(path_or_state_dict: str | Path | dict, trusted: bool = False) -> dict:
    """A checkpoint path (``torch.load`` on CPU) or a mapping -> flat state dict; unwraps a
    ``state_dict`` / ``model`` entry when the file holds a training checkpoint.

    Files are read with ``weights_only=True`` (tensors and plain containers), which also admits the
    ``argparse.Namespace`` of the official SSAM training files (``{model, optimizer, epoch, scaler, args}``).
    A file that pickles any other object is refused with a message saying so; ``trusted=True`` reads it
    with full unpickling, which can run code from the file: only for files from a source you trust.
    """
    if isinstance(path_or_state_dict, (str, Path)):
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise ValueError(f"checkpoint file not found: {path}")
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                sd = torch.load(path, map_location="cpu", weights_only=not trusted)
        except Exception as err:  # pickle / zip errors: name the file
            if not trusted and isinstance(err, pickle.UnpicklingError):
                raise ValueError(
                    f"{path} pickles Python objects besides tensors and plain containers (a training "
                    "checkpoint with its own objects), which the safe loader refuses: if you trust the "
                    "file, pass trusted=True to read it with full unpickling") from err
            raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    elif isinstance(path_or_state_dict, dict):
        sd = path_or_state_dict
    else:
        raise TypeError("expected a checkpoint path or a state dict, got "
                        f"{type(path_or_state_dict).__name__}")
    for key in _CONTAINER_KEYS:
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    bad = [k for k, v in sd.items() if not torch.is_tensor(v)]
    if bad:
        raise TypeError(f"state dict entries must be tensors; not tensors: {bad[:5]}")
    return sd


def map_official_keys(model: torch.nn.Module, state_dict: dict) -> tuple[dict, list]:
    """Official keys -> the model's keys. Returns (mapped dict, ignored official keys)."""
    prefixes = getattr(model, "official_prefixes", ("module.",))
    ignored_patterns = [re.compile(p) for p in getattr(model, "official_ignored", ())]
    mapped, ignored = {}, []
    for key, value in state_dict.items():
        new = key
        for prefix in prefixes:
            if new.startswith(prefix):
                new = new[len(prefix):]
        if any(p.fullmatch(new) for p in ignored_patterns):
            ignored.append(key)
        else:
            mapped[new] = value
    return mapped, ignored


def load_official(model: torch.nn.Module, path_or_state_dict: str | Path | dict, strict: bool = True,
                  verbose: bool = False, trusted: bool = False) -> LoadReport:
    """Load an official checkpoint into ``model`` and return a :class:`LoadReport`.

    Keys are mapped with the model's ``official_prefixes`` / ``official_ignored``. With
    ``strict`` any missing, unexpected or shape-mismatched key raises ``ValueError`` (the
    report is the message) and nothing is loaded; otherwise the matching tensors are copied
    and the rest is reported. ``verbose`` logs the report (logger ``dasslib.models.checkpoints``,
    level INFO). ``trusted``: see :func:`read_state_dict` (official SSAM training checkpoints need it).
    """
    mapped, ignored = map_official_keys(model, read_state_dict(path_or_state_dict, trusted=trusted))
    own = model.state_dict()
    report = LoadReport(ignored=ignored)
    report.missing = [k for k in own if k not in mapped]
    for key, value in mapped.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            report.loaded.append(key)
    if strict and not report.ok:
        raise ValueError(f"checkpoint does not match {type(model).__name__}:\n{report}")
    model.load_state_dict({k: mapped[k] for k in report.loaded}, strict=False)
    if verbose:
        logger.info("%s", report)
    return report


def init_dass_from_vmamba(model: torch.nn.Module, path_or_state_dict: str | Path | dict,
                          strict: bool = True) -> LoadReport:
    """ImageNet init of a DASS model from a VMamba classification checkpoint (as the official
    DASS: VMamba-T for Small, VMamba-S for Medium): the stem's RGB kernels are summed to one
    input channel and the 1000-class head is dropped. Returns a :class:`LoadReport`."""
    sd = dict(read_state_dict(path_or_state_dict))
    w = sd.get("patch_embed.0.weight")
    if w is not None and w.dim() == 4 and w.shape[1] != 1:
        sd["patch_embed.0.weight"] = w.sum(dim=1, keepdim=True)
    sd = {k: v for k, v in sd.items() if not k.startswith("classifier.head.")}
    head = {k: v for k, v in model.state_dict().items() if k.startswith("classifier.head.")}
    report = load_official(model, {**sd, **head}, strict=strict)
    report.loaded = [k for k in report.loaded if k not in head]
    return report


__all__ = ["LoadReport", "read_state_dict", "map_official_keys", "load_official",
           "init_dass_from_vmamba"]
