"""AuM experiments (Erol et al.): AST vs AuM trained from scratch (paper Table 1) and the block
variant x CLS-token position ablation (paper Table 2).

Every run goes through `experiments.common.train_classifier`; a run lives in
``<root>/<model>-<tag>-<hash>`` where the hash covers everything that changes its result, so an
identical run (e.g. the Table 1 AuM and the Fo-Bi / middle cell of Table 2) is trained once.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from ..models import count_parameters
from .common import train_classifier

# Table 2 rows: name -> AuMConfig.bimamba
VARIANTS = {"fo_fo": "none", "fo_bi": "fo_bi", "bi_bi": "bi_bi"}
VARIANT_LABELS = {"fo_fo": "Fo-Fo", "fo_bi": "Fo-Bi", "bi_bi": "Bi-Bi"}
# Table 2 columns: name -> AuMConfig.cls_position ("mid" is accepted for "middle")
CLS_POSITIONS = {"head": "head", "middle": "mid", "tail": "tail"}
_CLS_ALIASES = {"mid": "middle", "end": "tail"}


def ablation_grid(variants, cls_positions) -> list[tuple[str, str]]:
    """Validated ``(variant, cls_position)`` pairs in table order (Fo-Fo, Fo-Bi, Bi-Bi x head,
    middle, tail), duplicates removed. Raises ``ValueError`` on an unknown or empty choice."""
    cls_positions = [_CLS_ALIASES.get(c, c) for c in cls_positions]
    for kind, given, known in (("variant", variants, VARIANTS), ("cls position", cls_positions, CLS_POSITIONS)):
        if not given:
            raise ValueError(f"give at least one {kind} (choices: {list(known)})")
        bad = [g for g in given if g not in known]
        if bad:
            raise ValueError(f"unknown {kind}(s) {bad}; choices: {list(known)}")
    return [(v, c) for v in VARIANTS if v in variants for c in CLS_POSITIONS if c in cls_positions]


def aum_section(model: str, overrides: dict, variant: str, cls_position: str) -> dict:
    """Model section ``{name, **overrides, bimamba, cls_position}`` for one ablation cell."""
    (variant, cls_position), = ablation_grid([variant], [cls_position])
    return dict(name=model, **overrides, bimamba=VARIANTS[variant], cls_position=CLS_POSITIONS[cls_position])


def run_dir(root, section: dict, train: dict, loader: dict, audio: dict | None, augment: dict | None) -> Path:
    """``root/<name>[-<bimamba>-<cls>]-<hash of everything that changes the result>``."""
    key = json.dumps(dict(model=section, train=train, batch_size=loader.get("batch_size"), audio=audio or {},
                          augment=augment or {}), sort_keys=True, default=str)
    tag = "-".join(str(section[k]) for k in ("bimamba", "cls_position") if k in section)
    name = section["name"] + (f"-{tag}" if tag else "")
    return Path(root) / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def train_run(out: Path, section: dict, paths: dict, stats: tuple, train: dict, loader: dict,
              audio: dict | None = None, augment: dict | None = None) -> dict:
    """Train (or load the finished) run of ``section`` in folder ``out`` (`run_dir`); returns
    ``{params_M, mAP, mAUC, d_prime, run}`` (``params_M``: trainable parameters in millions,
    ``run``: the run folder's name)."""
    model, metrics = train_classifier(out, section, paths, stats, train, loader, audio=audio, augment=augment)
    n = count_parameters(model, trainable_only=True)
    return dict(params_M=n / 1e6, **{k: float(metrics[k]) for k in ("mAP", "mAUC", "d_prime")}, run=out.name)


def plan_runs(ast_model: str, ast_overrides: dict, aum_model: str, aum_overrides: dict, variants,
              cls_positions, target_length: int | None = None) -> dict:
    """Model sections of every run: ``"AST"``, ``"AuM"`` (Fo-Bi, middle CLS: the paper's design) and
    one per ablation cell ``(variant, cls_position)``. ``target_length`` (frames) sets both models'
    ``input_tdim`` so their positional tables match the input."""
    tdim = {} if target_length is None else dict(input_tdim=int(target_length))
    plan = {"AST": dict(name=ast_model, **ast_overrides, **tdim),
            "AuM": aum_section(aum_model, dict(aum_overrides, **tdim), "fo_bi", "middle")}
    for v, c in ablation_grid(variants, cls_positions):
        plan[(v, c)] = aum_section(aum_model, dict(aum_overrides, **tdim), v, c)
    return plan


def run_all(plan: dict, root, paths: dict, stats: tuple, train: dict, loader: dict,
            audio: dict | None = None, augment: dict | None = None, log=print) -> dict:
    """`train_run` for every entry of `plan_runs`; identical runs (same folder) are trained once.
    Returns ``{key: result}`` in plan order."""
    done, results = {}, {}
    for key, section in plan.items():
        out = run_dir(root, section, train, loader, audio, augment)
        if out not in done:
            done[out] = train_run(out, section, paths, stats, train, loader, audio, augment)
            if log:
                r = done[out]
                log(f"{r['run']}: {r['params_M']:.3f}M params, mAP {r['mAP']:.4f}, mAUC {r['mAUC']:.4f}")
        results[key] = done[out]
    return results


def runs_table(results: dict) -> pd.DataFrame:
    """One row per `run_all` entry: ``key, params_M, mAP, mAUC, d_prime, run``."""
    rows = [dict(key=k if isinstance(k, str) else "/".join(k), **r) for k, r in results.items()]
    return pd.DataFrame(rows).set_index("key")


def table1(results: dict) -> pd.DataFrame:
    """Paper Table 1 shape from `run_all` results: rows AST, AuM; columns ``params_M``, ``mAP``."""
    rows = [dict(model=m, params_M=results[m]["params_M"], mAP=results[m]["mAP"]) for m in ("AST", "AuM")]
    return pd.DataFrame(rows).set_index("model")


def table2(results: dict) -> pd.DataFrame:
    """Paper Table 2 shape from the ablation cells of `run_all` results (keys ``(variant, cls)``):
    mAP with rows = block variant (Fo-Fo, Fo-Bi, Bi-Bi, those run), columns = CLS position (head,
    middle, tail, those run)."""
    cells = {k: r["mAP"] for k, r in results.items() if isinstance(k, tuple)}
    if not cells:
        raise ValueError("no ablation cells in results")
    rows = [v for v in VARIANTS if any(k[0] == v for k in cells)]
    cols = [c for c in CLS_POSITIONS if any(k[1] == c for k in cells)]
    df = pd.DataFrame(float("nan"), index=pd.Index([VARIANT_LABELS[v] for v in rows], name="block"),
                      columns=pd.Index(cols, name="cls"))
    for (v, c), m in cells.items():
        df.loc[VARIANT_LABELS[v], c] = m
    return df


def combined_table(results: dict, chance: float | None = None) -> pd.DataFrame:
    """Both tables in one from `run_all` results: Table 1 rows (``AST``, ``AuM``), then one row per
    Table 2 cell (``AuM <block> <cls>``, table order); columns ``table, params_M, mAP, mAUC``; with
    ``chance`` (`common.chance_map`) a last row ``constant predictor`` (table 0, mAUC 0.5)."""
    def row(name, table, r):
        return dict(run=name, table=table, params_M=r["params_M"], mAP=r["mAP"], mAUC=r["mAUC"])

    rows = [row(m, 1, results[m]) for m in ("AST", "AuM")]
    rows += [row(f"AuM {VARIANT_LABELS[v]} {c}", 2, results[(v, c)])
             for v in VARIANTS for c in CLS_POSITIONS if (v, c) in results]
    if chance is not None:
        rows.append(row("constant predictor", 0, dict(params_M=0.0, mAP=float(chance), mAUC=0.5)))
    return pd.DataFrame(rows).set_index("run")


def plot_table2(t2: pd.DataFrame, title="AuM ablation: mAP", chance: float | None = None):
    """Seaborn heatmap of `table2` (annotated); ``chance`` goes into the title (the mAP of a
    constant predictor). Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * t2.shape[1], 1.2 + 0.8 * t2.shape[0]))
    sns.heatmap(t2.astype(float), annot=True, fmt=".3f", cmap="viridis", cbar_kws=dict(label="mAP"), ax=ax)
    if chance is not None:
        title = f"{title} (constant predictor: {chance:.3f})"
    ax.set(title=title, xlabel="CLS position", ylabel="block variant")
    return fig


# ---------------------------------------------------------------- reading a finished run back
def read_results(out) -> dict:
    """What the notebook saved in ``out``, read back for its figures and text: ``table1`` (index
    model), ``table2`` (index block, columns CLS positions), ``combined`` (index run), ``chance``
    (the constant predictor's mAP, None if the run did not record it), ``runs`` (``runs.csv``) and
    ``history`` (per-epoch history of every distinct run, `common.read_histories`, labelled by
    its key: ``AST``, ``AuM``, ``fo_bi/head``, ...)."""
    from .common import read_histories, read_stops

    out = Path(out)
    combined = pd.read_csv(out / "combined.csv", index_col="run")
    chance = combined.loc["constant predictor", "mAP"] if "constant predictor" in combined.index else None
    runs = pd.read_csv(out / "runs.csv", index_col="key")
    dirs = {}
    for key, run in runs["run"].items():
        if out / "runs" / run not in dirs.values():
            dirs[key] = out / "runs" / run
    return dict(table1=pd.read_csv(out / "table1_ast_vs_aum.csv", index_col="model"),
                table2=pd.read_csv(out / "table2_variant_cls.csv", index_col="block").rename_axis(columns="cls"),
                combined=combined, chance=None if chance is None else float(chance), runs=runs,
                history=read_histories(dirs), stops=read_stops(dirs))


PROFILE_SCOPES = {
    "ci": "tiny 2-layer models trained for a few steps on the small embedded `ci` set. It shows that AST, AuM "
          "and the ablation grid train and evaluate end to end; with this few clips and steps the differences "
          "between runs are within noise, so it cannot rank the models or the variants.",
    "gpu": "AST-Tiny and AuM-Tiny trained from scratch on the embedded `gpu` set (synthetic clips, no AudioSet) "
           "for a short schedule. It can rank the models and the block / CLS variants early in training on this "
           "data; it cannot show their AudioSet mAPs or their ranking at convergence.",
    "paper": "the paper's AS-20K setting (Base models, the paper's recipe): its numbers can be put next to the "
             "paper's Tables 1 and 2.",
}


def summary(results: dict, profile: str, epochs: int | None = None) -> str:
    """The "What this run shows" Markdown of a 03 run, computed from `read_results`."""
    from .common import profile_sentence, stops_sentence

    t1, t2, chance = results["table1"], results["table2"], results["chance"]
    stops = results.get("stops")
    capped = stops is not None and (stops["reason"] != "fixed_epochs").any()
    ast, aum = float(t1.loc["AST", "mAP"]), float(t1.loc["AuM", "mAP"])
    lines = ["### What this run shows", "", profile_sentence(profile, "03_aum_scratch", PROFILE_SCOPES)]
    if epochs is not None:
        lines[-1] += f" Every model trained {'at most ' if capped else ''}{epochs} epoch(s)."
    if stops is not None and len(stops):
        lines[-1] += " " + stops_sentence(stops)
    lines += ["", "**Table 1** (the paper: trained from scratch, AuM outperforms AST). Here: AST "
              f"{ast:.3f} mAP ({t1.loc['AST', 'params_M']:.3g}M parameters), AuM {aum:.3f} "
              f"({t1.loc['AuM', 'params_M']:.3g}M): {'AuM' if aum > ast else 'AST'} is ahead by {abs(aum - ast):.3f}"
              + (", as in the paper." if aum > ast else ", unlike the paper.")]
    cells = t2.stack().dropna()
    if len(cells):
        (best_v, best_c), best = cells.idxmax(), float(cells.max())
        (worst_v, worst_c), worst = cells.idxmin(), float(cells.min())
        text = (f"**Table 2** (the paper's design is Fo-Bi blocks with the CLS token in the middle). Here, over "
                f"{len(cells)} variant x position cells: best {best_v} / {best_c} ({best:.3f}), worst {worst_v} / "
                f"{worst_c} ({worst:.3f}), a spread of {best - worst:.3f}")
        if ("Fo-Bi", "middle") in cells.index:
            rank = int((cells > cells[("Fo-Bi", "middle")]).sum()) + 1
            text += f"; Fo-Bi / middle ranks {rank} of {len(cells)}"
        text += "."
        if t2.shape[1] > 1:
            worst_col = t2.idxmin(axis=1)
            common = worst_col.mode().iloc[0]
            text += (f" The {common} position is the worst of its row in {int((worst_col == common).sum())} of "
                     f"{len(worst_col)} rows.")
        lines += ["", text]
    if chance is not None:
        rows = results["combined"].drop(index="constant predictor", errors="ignore")
        above = int((rows["mAP"] > chance).sum())
        lines += ["", f"A constant predictor scores {chance:.3f}; {above} of {len(rows)} runs are above it "
                      f"(best margin {float(rows['mAP'].max()) - chance:+.3f})."]
    else:
        lines += ["", "This run did not record the constant predictor's mAP (the floor to read these numbers against)."]
    return "\n".join(lines)
