"""The papers' claims checked against this repo's committed results: one row per claim.

    python -m dasslib.experiments.claims --results results/gpu --csv results/gpu/claims.csv \
        [--markdown claims.md]

Every row is computed from a CSV the notebooks wrote (``source``), says what the paper reports
(``paper``), what our run gives (``ours``), whether the claim holds at this scale (``holds``: yes,
no, partly, or "not run" when the CSV is missing) and how the runs behind it stopped training
(``training``: plateau rule, epoch cap or a fixed number of epochs, from their ``metrics.json``).
Nothing here is typed in by hand: re-running the notebooks and this module regenerates the table.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .common import read_stops, stops_sentence

__all__ = ["Claim", "CLAIMS", "check_claims", "claims_markdown"]

COLUMNS = ["claim", "paper", "ours", "holds", "source", "training"]


@dataclass(frozen=True)
class Claim:
    """One claim: ``name``, where the paper makes it and what it reports (``paper``), the CSV it is
    checked on (relative to the results folder), the training runs behind that CSV (folders
    relative to the results folder; glob patterns) and ``check(table) -> (ours, holds)``."""
    name: str
    paper: str
    source: str
    runs: tuple
    check: Callable[[pd.DataFrame], tuple]


def _f(x) -> str:
    return f"{x:.3f}"


def _yes(cond) -> str:
    return "yes" if cond else "no"


# --- DASS (01_distill, 04_niah) ---------------------------------------------------------------

def _kd_helps(t):
    none = t.loc[t.KD == "none"]
    none = none.loc[~none.model.str.contains("teacher")]
    kd = t.loc[(t.KD != "none")]
    a, b = float(none.mAP.iloc[0]), float(kd.mAP.iloc[0])
    return f"student mAP {_f(a)} without KD, {_f(b)} with KD ({kd.KD.iloc[0]} teacher)", _yes(b > a)


def _student_passes_teacher(t):
    teacher = t.loc[t.model.str.contains("teacher")]
    kd = t.loc[t.KD != "none"]
    a, b = float(teacher.mAP.iloc[0]), float(kd.mAP.iloc[0])
    return f"teacher {_f(a)}, KD student {_f(b)}", _yes(b > a)


def _stronger_teacher(t):
    t = t.loc[t.teacher != "none"].sort_values("teacher_mAP")
    pairs = ", ".join(f"{r.teacher} {_f(r.teacher_mAP)} -> {_f(r.student_mAP)}" for r in t.itertuples())
    best_teacher = t.iloc[-1]
    best_student = t.loc[t.student_mAP.idxmax()]
    # the paper: the strongest teacher does not give the best student
    holds = best_student.teacher != best_teacher.teacher
    return f"teacher -> student mAP: {pairs}", _yes(holds)


def _mean_least_sensitive(t):
    spread = t.groupby("model").rel_drop.agg(lambda s: s.max() - s.min())
    parts = ", ".join(f"{m} {_f(v)}" for m, v in spread.items())
    dass = spread[[m for m in spread.index if m.startswith("dass")]]
    return (f"spread of the relative drop over needle positions (max - min): {parts}",
            _yes(dass.idxmin().endswith("/mean")))


def _short_drop(t):
    short = t.loc[t.length_s <= 60]
    drop = short.groupby("series").rel_drop.mean()
    dass = {s: v for s, v in drop.items() if s.startswith("dass")}
    ast = {s: v for s, v in drop.items() if s.startswith("ast")}
    if not dass or not ast:
        return "needs a DASS and an AST series at 30-60 s", "not run"
    d, a = min(dass.values()), min(ast.values())
    parts = ", ".join(f"{s} {_f(v)}" for s, v in drop.items())
    holds = "yes" if d < 0.05 and a > 0.5 else ("partly" if d < a else "no")
    return f"mean relative drop at 30-60 s: {parts}", holds


def _noise_worse(t):
    zeros = t.attrs["zeros"]
    rows = []
    worse = []
    for r in t.itertuples():
        z = zeros.loc[(zeros.model == r.model) & (zeros.length_s == r.length_s) & (zeros.position == r.position)]
        if not len(z):
            continue
        zd = float(z.rel_drop.iloc[0])
        rows.append(f"{r.haystack} {r.snr_db:g} dB {_f(r.rel_drop)}")
        worse.append(r.rel_drop > zd)
    if not rows:
        return "no zero-padded haystack of the same length to compare with", "not run"
    n = sum(worse)
    holds = "yes" if n == len(worse) else ("no" if n == 0 else "partly")
    return f"relative drop at {t.length_s.iloc[0]:g} s, zeros {_f(zd)}; " + ", ".join(rows), holds


# --- AuM (03_aum_scratch) ------------------------------------------------------------------------

def _aum_vs_ast(t):
    m = dict(zip(t.model, t.mAP))
    a, b = float(m["AST"]), float(m["AuM"])
    return f"AST {_f(a)}, AuM {_f(b)} (AuM / AST {b / a:.2f})", _yes(b >= 0.95 * a)


def _cls_position(t):
    t = t.set_index("block")
    best = t.stack().idxmax()
    head_worst = all(t.loc[b].idxmin() == "head" for b in t.index)
    cells = "; ".join(f"{b}: " + ", ".join(f"{c} {_f(t.loc[b, c])}" for c in t.columns) for b in t.index)
    fo_bi_mid = best == ("Fo-Bi", "middle")
    holds = "yes" if fo_bi_mid and head_worst else ("partly" if fo_bi_mid or head_worst else "no")
    ours = f"best cell {best[0]} / {best[1]}; head the worst position in every block: {_yes(head_worst)} ({cells})"
    return ours, holds


# --- SSAM (02_ssam_pretrain) -----------------------------------------------------------------------

def _ssam_vs_ssast(t):
    m = {(r.model.split(" ")[0], r.pretraining): float(r.mAP) for r in t.itertuples()}
    ssam, ssast = m[("SSAM-Tiny", "pretrained")], m[("SSAST-Tiny", "pretrained")]
    helps = all(m[(k, "pretrained")] > m[(k, "no pretraining")] for k in ("SSAM-Tiny", "SSAST-Tiny"))
    ours = (f"pretrained SSAM {_f(ssam)} vs SSAST {_f(ssast)}; random init SSAM "
            f"{_f(m[('SSAM-Tiny', 'no pretraining')])}, SSAST {_f(m[('SSAST-Tiny', 'no pretraining')])}")
    beats = ssam > ssast
    return ours, "yes" if beats and helps else ("partly" if beats or helps else "no")


def _patch_sizes(t):
    wide = t.pivot_table(index="n_patches", columns="model", values="mAP")
    gap = (wide["SSAM-Tiny"] - wide["SSAST-Tiny"]).sort_index()
    parts = ", ".join(f"{n} patches {_f(g)}" for n, g in gap.items())
    always = bool((gap > 0).all())
    grows = bool(gap.is_monotonic_increasing)
    holds = "yes" if always and grows else ("partly" if always or grows else "no")
    return f"SSAM - SSAST mAP by number of patches: {parts}", holds


def _uni_vs_vim(t):
    m = dict(zip(t.ssm_type.astype(str), t.mAP))
    return f"Mamba {_f(m['Mamba'])}, Vim {_f(m['Vim'])}", _yes(m["Mamba"] > m["Vim"])


CLAIMS = [
    Claim("KD helps the student", "DASS Table 1: DASS-Small from scratch 12.0 -> 20.2 mAP with KD (AS-20K)",
          "01_distill/table1.csv", ("01_distill/student_*",), _kd_helps),
    Claim("The student passes its teacher",
          "DASS 4.2-4.3, Table 2: with KD DASS-Small (47.1) passes its AST-Base teacher (45.9)",
          "01_distill/table1.csv", ("01_distill/teacher_*", "01_distill/student_*"), _student_passes_teacher),
    Claim("A stronger teacher does not give a better student",
          "DASS Table 2 (AS-2M, 5 epochs): stronger DASS teachers gave no better student than AST-Base",
          "01_distill/table2.csv", ("01_distill/teacher_*", "01_distill/student_*"), _stronger_teacher),
    Claim("Mean pooling is the least position-sensitive", "DASS Fig. 3 and 5.1",
          "04_niah/fig3_pooling_position.csv", ("04_niah/train_dass_small_*",), _mean_least_sensitive),
    Claim("DASS's drop at 30-50 s is small, AST's large",
          "DASS Fig. 4, 5.1-5.2: DASS < 5% drop at 50 s; AST at 20% of its 10 s mAP at 30 s",
          "04_niah/fig4_length.csv", ("04_niah/train_*",), _short_drop),
    Claim("Noise haystacks are worse than zeros", "DASS Fig. 5 and Fig. 6: worse than zero padding for both noises",
          "04_niah/fig5_noise_snr.csv", ("04_niah/train_dass_small_*",), _noise_worse),
    Claim("AuM is comparable to AST from scratch", "AuM Table 1: AuM-B at or above AST-B from scratch",
          "03_aum_scratch/table1_ast_vs_aum.csv", ("03_aum_scratch/runs/*",), _aum_vs_ast),
    Claim("Fo-Bi with a middle CLS is best, head CLS worst", "AuM Table 2 (AS-20K, VGGSound)",
          "03_aum_scratch/table2_variant_cls.csv", ("03_aum_scratch/runs/*",), _cls_position),
    Claim("SSAM beats SSAST of the same size; pretraining helps both", "SSAM Table 1 (s(m) over ten tasks)",
          "02_ssam_pretrain/table1.csv", ("02_ssam_pretrain/runs/*",), _ssam_vs_ssast),
    Claim("SSAM's lead over SSAST holds at every patch size and grows with the number of patches",
          "SSAM Table 2: +10.9 s(m) at 125 patches, +20.3 at 250, +21.9 at 500",
          "02_ssam_pretrain/table2.csv", ("02_ssam_pretrain/runs/*",), _patch_sizes),
    Claim("Unidirectional SSAM beats its Vim variant", "SSAM Table 4: Mamba 76.3 vs Vim 65.7 s(m)",
          "02_ssam_pretrain/table4.csv", ("02_ssam_pretrain/runs/ssam_tiny-p4x16-*",), _uni_vs_vim),
]


def _read(results: Path, claim: Claim) -> pd.DataFrame | None:
    path = results / claim.source
    if not path.is_file():
        return None
    t = pd.read_csv(path)
    if claim.check is _noise_worse:           # the zero-padded rows it compares with
        zeros = results / "04_niah/fig4_length.csv"
        t.attrs["zeros"] = pd.read_csv(zeros) if zeros.is_file() else t.iloc[:0]
    return t


def _training(results: Path, claim: Claim) -> str:
    dirs = {}
    for pattern in claim.runs:
        for d in sorted(results.glob(pattern)):
            if (d / "metrics.json").is_file():
                dirs[str(d.relative_to(results))] = d
    return stops_sentence(read_stops(dirs)) if dirs else ""


def check_claims(results) -> pd.DataFrame:
    """The table of :data:`CLAIMS` checked on the CSVs under ``results`` (e.g. ``results/gpu``)."""
    results = Path(results)
    rows = []
    for c in CLAIMS:
        t = _read(results, c)
        ours, holds = ("CSV not found", "not run") if t is None else c.check(t)
        rows.append(dict(claim=c.name, paper=c.paper, ours=ours, holds=holds, source=c.source,
                         training=_training(results, c)))
    return pd.DataFrame(rows, columns=COLUMNS)


def claims_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown: claim | paper | ours | holds at this scale? | source."""
    lines = ["| claim | paper | ours | holds at this scale? | source |", "|---|---|---|---|---|"]
    for r in table.itertuples():
        cells = [r.claim, r.paper, r.ours, r.holds, f"`{r.source}`"]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    from dasslib.atomic import atomic_write, atomic_write_csv

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results/gpu", help="folder holding the notebooks' result folders")
    ap.add_argument("--csv", default=None, help="write the table here")
    ap.add_argument("--markdown", default=None, help="write the Markdown table here")
    args = ap.parse_args(argv)
    table = check_claims(args.results)
    if args.csv:
        atomic_write_csv(table, args.csv, index=False)
    md = claims_markdown(table)
    if args.markdown:
        atomic_write(args.markdown, lambda f: f.write(md.encode()))
    print(md)
    return table


if __name__ == "__main__":
    main()

