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
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
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


def plot_table2(t2: pd.DataFrame, path, title="AuM ablation: mAP", chance: float | None = None):
    """Seaborn heatmap of `table2` (annotated), saved to ``path`` (PNG); ``chance`` goes into the
    title (the mAP of a constant predictor)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * t2.shape[1], 1.2 + 0.8 * t2.shape[0]))
    sns.heatmap(t2.astype(float), annot=True, fmt=".3f", cmap="viridis", cbar_kws=dict(label="mAP"), ax=ax)
    if chance is not None:
        title = f"{title} (constant predictor: {chance:.3f})"
    ax.set(title=title, xlabel="CLS position", ylabel="block variant")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
