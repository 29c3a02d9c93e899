"""Knowledge distillation experiments (DASS paper, Sec. 4.2-4.3, Tables 1 and 2).

Teachers (trained here, or loaded from a checkpoint) and DASS students trained with plain BCE or
with a distillation loss (``kd_kl``: 0.5 BCE + 0.5 KL to the teacher, as the official code) go
through the one training loop. A teacher reaches the student's run as a model section with the path
of a saved state dict (``{name, <overrides>, checkpoint}``), as in a ``dasslib.train.cli`` run file.

Every run is one record ``{label, model, role, teacher, params_M, mAP, mAUC, d_prime, section}``
(``section``: the run's model section, with the ``checkpoint`` a student can learn from);
`table1`, `table2` and `runs_frame` are views of these records.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import torch

from ..metrics import evaluate
from ..models import count_parameters
from ..train import atomic_save
from .common import KD_LOSSES, audio_confs, classifier_config, load_classifier, train_from_config

_NO_TEACHER = "none"


def slug(label: str) -> str:
    """A folder name for a run label: ``"DASS-Small + KD"`` -> ``"dass_small_kd"``."""
    s = re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_")
    if not s:
        raise ValueError(f"label {label!r} has no letters or digits")
    return s


def pretty_name(name: str) -> str:
    """Registry name -> paper-style label: ``"dass_small"`` -> ``"DASS-Small"``."""
    family, _, size = name.partition("_")
    return family.upper() + (f"-{size.capitalize()}" if size else "")


def count_params_m(model: torch.nn.Module) -> float:
    """Number of parameters in millions."""
    return count_parameters(model) / 1e6


@torch.no_grad()
def evaluate_model(model, paths: dict, stats: tuple, audio: dict | None = None, batch_size: int = 24,
                   num_workers: int = 0, device=None) -> dict:
    """mAP / mAUC / d_prime of ``model`` on the eval set (eval features: no augmentation)."""
    from torch.utils.data import DataLoader

    from ..data import AudioConf, AudioDataset
    from ..inference import predict

    _, eval_audio = audio_confs(stats, 0, audio, None)
    ds = AudioDataset(paths["eval_json"], paths["label_csv"], AudioConf.from_dict(eval_audio))
    model = model.to(device or "cpu").eval()
    scores, targets = [], []
    for x, y in DataLoader(ds, batch_size=batch_size, num_workers=num_workers):
        # eager: one eval set is a few dozen batches, far fewer than a compile pays back
        scores.append(predict(model, x, fast="off"))
        targets.append(y)
    m = evaluate(torch.cat(scores).numpy(), torch.cat(targets).numpy())
    return {k: float(m[k]) for k in ("mAP", "mAUC", "d_prime")}


def _record(label, section, role, teacher, model, metrics, checkpoint=None) -> dict:
    """One run: ``section`` is the model section (with ``checkpoint`` when the run can teach)."""
    section = {k: v for k, v in section.items() if k not in ("checkpoint", "imagenet_init")}
    if checkpoint is not None:
        section["checkpoint"] = str(checkpoint)
    return dict(label=label, model=section["name"], role=role, teacher=teacher, params_M=count_params_m(model),
                mAP=float(metrics["mAP"]), mAUC=float(metrics["mAUC"]), d_prime=float(metrics["d_prime"]),
                section=section)


def get_teachers(out: Path, teachers: dict, paths: dict, stats: tuple, train: dict, loader: dict,
                 audio: dict | None = None, augment: dict | None = None, balanced: bool = False,
                 device=None) -> list[dict]:
    """Train (or load) every teacher; ``teachers``: ``{label: {name, <overrides>, checkpoint?}}``.

    A teacher with a ``checkpoint`` is loaded and evaluated; the others are trained with ``train``
    (BCE) under ``out/teacher_<label>`` and their final (averaged) weights saved as a plain state dict
    ``out/teacher_<label>/teacher.pt``. Returns one record per teacher (role ``"teacher"``)."""
    records = []
    for label, section in teachers.items():
        if "name" not in section:
            raise ValueError(f"teacher {label!r} needs a model name")
        if section.get("checkpoint"):
            model = load_classifier(section, paths["label_csv"], audio, role="teacher")
            metrics = evaluate_model(model, paths, stats, audio, 2 * loader.get("batch_size", 12),
                                     loader.get("num_workers", 0), device)
            checkpoint = section["checkpoint"]
        else:
            run_dir = Path(out) / f"teacher_{slug(label)}"
            if train.get("loss", "bce") in KD_LOSSES:
                raise ValueError("teachers are trained without distillation: drop 'loss' from teacher_train")
            model, metrics = train_from_config(classifier_config(run_dir, section, paths, stats, train, loader,
                                                                 audio, augment, balanced=balanced))
            checkpoint = run_dir / "teacher.pt"
            atomic_save(model.state_dict(), checkpoint)
        records.append(_record(label, section, "teacher", _NO_TEACHER, model, metrics, checkpoint))
    return records


def train_students(out: Path, student: dict, teacher_records: list[dict], kd_teacher: str, paths: dict,
                   stats: tuple, train: dict, loader: dict, audio: dict | None = None, augment: dict | None = None,
                   balanced: bool = False, kd_loss: str = "kd_kl", dass_teacher: bool = True,
                   student_label: str | None = None) -> list[dict]:
    """DASS students trained with ``train`` under ``out/student_<label>``: one without KD (BCE), one
    with ``kd_loss`` from every teacher of ``teacher_records`` (`get_teachers`; ``kd_teacher`` first,
    the Table-1 student) and, with ``dass_teacher``, one taught by that Table-1 KD student itself (a
    teacher of the student's own architecture, as in the paper's Table 2).

    Returns one record per student (role ``"student"``, labels ``"<student>"`` and
    ``"<student> + KD (<teacher>)"``) and, with ``dass_teacher``, the Table-1 KD student again as a
    teacher record labelled ``"<student> + KD"``."""
    if kd_loss not in KD_LOSSES:
        raise ValueError(f"kd_loss must be one of {KD_LOSSES}, got {kd_loss!r}")
    by_label = {r["label"]: r for r in teacher_records}
    if kd_teacher not in by_label:
        raise ValueError(f"kd_teacher {kd_teacher!r} is not one of the teachers {list(by_label)}")
    if "loss" in train:
        raise ValueError("the student loss is set by the experiment (bce / kd_loss): drop 'loss' from train")
    name = student_label or pretty_name(student["name"])

    def student_run(label, teacher=None):
        """teacher: (label, model section with checkpoint) or None."""
        loss = "bce" if teacher is None else kd_loss
        config = classifier_config(Path(out) / f"student_{slug(label)}", student, paths, stats,
                                   dict(train, loss=loss), loader, audio, augment,
                                   None if teacher is None else teacher[1], balanced)
        model, metrics = train_from_config(config)
        return model, _record(label, student, "student", _NO_TEACHER if teacher is None else teacher[0],
                              model, metrics)

    records = [student_run(name)[1]]
    for t in [kd_teacher] + [t for t in by_label if t != kd_teacher]:
        model, rec = student_run(f"{name} + KD ({t})", (t, by_label[t]["section"]))
        records.append(rec)
        if t == kd_teacher:
            kd_model, kd_rec = model, rec
    if dass_teacher:
        path = Path(out) / f"student_{slug(kd_rec['label'])}" / "teacher.pt"
        atomic_save(kd_model.state_dict(), path)
        teacher_label = f"{name} + KD"
        section = dict(kd_rec["section"], checkpoint=str(path))
        records.append(dict(kd_rec, label=teacher_label, role="teacher", section=section))
        records.append(student_run(f"{name} + KD ({teacher_label})", (teacher_label, section))[1])
    return records


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """All runs, one row each (the model section's checkpoint as a column; paths are relative to the
    notebook's folder when the runs live under it)."""
    rows = [dict({k: v for k, v in r.items() if k != "section"}, checkpoint=r["section"].get("checkpoint"))
            for r in records]
    return pd.DataFrame(rows, columns=["label", "model", "role", "teacher", "params_M", "mAP", "mAUC",
                                       "d_prime", "checkpoint"])


def _get(records, label, role):
    found = [r for r in records if r["label"] == label and r["role"] == role]
    if not found:
        raise ValueError(f"no {role} run labelled {label!r}")
    return found[0]


def table1(records: list[dict], kd_teacher: str, student_label: str) -> pd.DataFrame:
    """Paper Table 1 shape: rows = the teacher, the student without KD, the student with KD from
    ``kd_teacher``; columns params_M, KD (the teacher's label or "none"), mAP, mAUC."""
    rows = [_get(records, kd_teacher, "teacher"), _get(records, student_label, "student"),
            _get(records, f"{student_label} + KD ({kd_teacher})", "student")]
    df = pd.DataFrame([dict(model=r["label"], params_M=r["params_M"], KD=r["teacher"], mAP=r["mAP"],
                            mAUC=r["mAUC"]) for r in rows])
    df.loc[0, "model"] = f"{kd_teacher} (teacher)"
    return df.set_index("model")


def table2(records: list[dict], student_label: str) -> pd.DataFrame:
    """Paper Table 2 shape: one row per student run, i.e. per teacher (the no-KD student is the
    reference row, teacher "none"): student, params_M, teacher, teacher_params_M, teacher_mAP, student_mAP."""
    teachers = {r["label"]: r for r in records if r["role"] == "teacher"}
    rows = []
    for r in records:
        if r["role"] != "student":
            continue
        t = teachers.get(r["teacher"])
        rows.append(dict(student=student_label, params_M=r["params_M"], teacher=r["teacher"],
                         teacher_params_M=None if t is None else t["params_M"],
                         teacher_mAP=None if t is None else t["mAP"], student_mAP=r["mAP"]))
    return pd.DataFrame(rows, columns=["student", "params_M", "teacher", "teacher_params_M", "teacher_mAP",
                                       "student_mAP"])


def combined_table(t1: pd.DataFrame, t2: pd.DataFrame, chance: float | None = None) -> pd.DataFrame:
    """Tables 1 and 2 stacked: columns table, model, params_M, teacher, teacher_mAP, mAP; with
    ``chance`` (`common.chance_map`) a last row "constant predictor" (table "-")."""
    a = t1.reset_index().rename(columns={"KD": "teacher"}).assign(table="1", teacher_mAP=float("nan"))
    b = t2.rename(columns={"student": "model", "student_mAP": "mAP"}).assign(table="2")
    b["model"] = [m if t == _NO_TEACHER else f"{m} + KD" for m, t in zip(b["model"], b["teacher"])]
    cols = ["table", "model", "params_M", "teacher", "teacher_mAP", "mAP"]
    parts = [a[cols], b[cols]]
    if chance is not None:
        parts.append(pd.DataFrame([dict(table="-", model="constant predictor", params_M=0.0, teacher=_NO_TEACHER,
                                        teacher_mAP=float("nan"), mAP=float(chance))]))
    return pd.concat(parts, ignore_index=True)


def plot_tables(t1: pd.DataFrame, t2: pd.DataFrame, chance: float | None = None):
    """Seaborn bar charts: Table 1 mAP per model; Table 2 teacher and student mAP per teacher;
    ``chance`` (`common.chance_map`) as a dashed line on both. Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    sns.barplot(data=t1.reset_index(), x="model", y="mAP", ax=axes[0], color="C0")
    axes[0].set(title="Table 1: teacher and student, with and without KD", xlabel="")
    long = t2[["teacher", "teacher_mAP", "student_mAP"]].set_axis(["by", "teacher", "student"], axis=1).melt(
        id_vars=["by"], value_vars=["teacher", "student"], var_name="model", value_name="mAP").dropna()
    sns.barplot(data=long, x="by", y="mAP", hue="model", order=list(t2["teacher"]), ax=axes[1])
    axes[1].set(title="Table 2: the student with different teachers", xlabel="teacher")
    for ax in axes:
        if chance is not None:
            ax.axhline(chance, color="0.3", linestyle="--", linewidth=1, label="constant predictor")
            ax.legend(loc="lower right", fontsize=8)
        ax.tick_params(axis="x", labelrotation=20)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    return fig


# ---------------------------------------------------------------- reading a finished run back
def run_folder(out, label: str, role: str, checkpoint=None) -> Path:
    """The folder of a run of `runs_frame`: ``out/<role>_<slug(label)>``; a teacher record that
    re-uses a student (Table 2's DASS teacher) lives in its checkpoint's folder."""
    if role == "teacher" and isinstance(checkpoint, str) and Path(checkpoint).parent.name.startswith("student_"):
        return Path(out) / Path(checkpoint).parent.name
    return Path(out) / f"{role}_{slug(label)}"


def read_results(out) -> dict:
    """What the notebook saved in ``out``, read back for its figures and text: ``table1``
    (index model), ``table2``, ``combined`` (``tables_combined.csv``), ``chance`` (the constant
    predictor's mAP, None if not recorded), ``runs`` (``runs.csv``) and ``history`` (every trained
    run's per-epoch history, `common.read_histories`; the re-used DASS teacher appears once)."""
    from .common import read_histories, read_stops

    out = Path(out)
    t1 = pd.read_csv(out / "table1.csv", index_col="model")
    t2 = pd.read_csv(out / "table2.csv")
    t2["teacher"] = t2["teacher"].fillna(_NO_TEACHER)
    combined = pd.read_csv(out / "tables_combined.csv", dtype={"table": str})
    chance_rows = combined[combined["model"] == "constant predictor"]
    runs = pd.read_csv(out / "runs.csv")
    dirs = {}
    for r in runs.itertuples():
        folder = run_folder(out, r.label, r.role, r.checkpoint)
        if folder not in dirs.values():
            dirs[r.label] = folder
    return dict(table1=t1, table2=t2, combined=combined, runs=runs,
                chance=float(chance_rows["mAP"].iloc[0]) if len(chance_rows) else None,
                history=read_histories(dirs), stops=read_stops(dirs))


PROFILE_SCOPES = {
    "ci": "tiny models trained for a few steps on the small embedded `ci` set. It shows that teachers, "
          "students and the KD loss run end to end; with this few clips and steps the differences between runs "
          "are within noise, so it cannot say whether KD helps.",
    "gpu": "full-size DASS-Small students and AST teachers trained from scratch on the embedded `gpu` set "
           "(synthetic instrument clips, no AudioSet, no ImageNet initialization, a few epochs). It can show "
           "whether distillation transfers something from a teacher on this data and how the teacher's "
           "strength orders the students; it cannot reproduce the paper's AudioSet mAPs.",
    "paper": "the paper's AS-20K setting with the official checkpoints as teachers: its numbers can be put "
             "next to the paper's Tables 1 and 2.",
}


def _f(x) -> str:
    return f"{x:.3f}"


def summary(results: dict, profile: str, epochs: int | None = None, teacher_epochs: int | None = None) -> str:
    """The "What this run shows" Markdown of a 01 run, computed from `read_results` (every number
    comes from the run's tables). epochs / teacher_epochs: the students' / teachers' epochs, quoted."""
    from .common import profile_sentence, stops_sentence

    t1, t2, chance = results["table1"], results["table2"], results["chance"]
    stops = results.get("stops")
    capped = stops is not None and (stops["reason"] != "fixed_epochs").any()
    teacher_row = t1.index[0]
    teacher, plain, kd = (float(t1["mAP"].iloc[i]) for i in range(3))
    gain = kd - plain
    lines = ["### What this run shows", "",
             profile_sentence(profile, "01_distill", PROFILE_SCOPES)]
    if epochs is not None:
        lines[-1] += f" Students trained {'at most ' if capped else ''}{epochs} epoch(s)" + (
            f", teachers {teacher_epochs}." if teacher_epochs is not None else ".")
    if stops is not None and len(stops):
        lines[-1] += " " + stops_sentence(stops)
    lines += ["", "**Table 1** (the paper: distillation from an AST teacher improves DASS-Small, and the distilled "
              f"student outperforms its teacher). Here: {teacher_row} {_f(teacher)} mAP, {t1.index[1]} without KD "
              f"{_f(plain)}, with KD {_f(kd)}: KD {'raised' if gain > 0 else 'did not raise'} the student's mAP "
              f"({gain:+.3f}), and the KD student {'passed' if kd > teacher else 'stayed below'} its teacher "
              f"({kd - teacher:+.3f})."]
    if chance is not None:
        above = int((t1["mAP"] > chance).sum())
        lines[-1] += (f" A constant predictor scores {_f(chance)}; {above} of {len(t1)} Table 1 models are above it"
                      f" (best margin {float(t1['mAP'].max()) - chance:+.3f}).")
    kd_rows = t2[t2["teacher"] != _NO_TEACHER].dropna(subset=["teacher_mAP"])
    if len(kd_rows):
        by_teacher = kd_rows.sort_values("teacher_mAP", ascending=False)
        best_student = kd_rows.loc[kd_rows["student_mAP"].idxmax(), "teacher"]
        strongest = by_teacher["teacher"].iloc[0]
        passed = int((kd_rows["student_mAP"] > kd_rows["teacher_mAP"]).sum())
        helped = int((kd_rows["student_mAP"] > plain).sum())
        lines += ["", "**Table 2** (the paper: a stronger teacher gives a better student, and students pass their "
                  f"teachers). Here, over {len(kd_rows)} teachers: the strongest teacher ({strongest}, "
                  f"{_f(by_teacher['teacher_mAP'].iloc[0])}) "
                  + ("gave the best student" if best_student == strongest else
                     f"did not give the best student (that was {best_student}'s)")
                  + f" ({_f(kd_rows['student_mAP'].max())}); {passed} of {len(kd_rows)} students passed their teacher; "
                  f"{helped} of {len(kd_rows)} KD students beat the student without KD ({_f(plain)})."]
    return "\n".join(lines)
