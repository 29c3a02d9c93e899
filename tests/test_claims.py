"""dasslib.experiments.claims: the papers' claims checked on result CSVs."""
import json
from pathlib import Path

import pandas as pd
import pytest

from dasslib.experiments import claims as C

REPO = Path(__file__).resolve().parents[1]


def _write(root, rel, rows):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def _results(root, student_kd=0.30, teacher=0.25, aum=0.20, ast=0.19, ssam_gap=(0.05, 0.06, 0.08)):
    """A results folder with every CSV the claims read; numbers where the paper's claims hold by default."""
    _write(root, "01_distill/table1.csv", [
        dict(model="AST-Small (teacher)", params_M=22, KD="none", mAP=teacher, mAUC=0.7),
        dict(model="DASS-Small", params_M=30, KD="none", mAP=0.10, mAUC=0.6),
        dict(model="DASS-Small + KD (AST-Small)", params_M=30, KD="AST-Small", mAP=student_kd, mAUC=0.7)])
    _write(root, "01_distill/table2.csv", [
        dict(student="DASS-Small", teacher="none", teacher_mAP=None, student_mAP=0.10),
        dict(student="DASS-Small", teacher="AST-Small", teacher_mAP=0.25, student_mAP=0.30),
        dict(student="DASS-Small", teacher="DASS-Small + KD", teacher_mAP=0.30, student_mAP=0.29)])
    fig3 = []
    for model, drops in (("dass_small/mean", (0.02, 0.03, 0.02, 0.03, 0.02)),
                         ("dass_small/last", (0.3, 0.3, 0.2, 0.1, 0.01))):
        for pos, d in zip((0, 0.25, 0.5, 0.75, 1.0), drops):
            fig3.append(dict(model=model, length_s=50.0, position=pos, haystack="zeros", rel_drop=d))
    _write(root, "04_niah/fig3_pooling_position.csv", fig3)
    fig4 = [dict(model="dass_small/mean", length_s=L, position=0.5, haystack="zeros", snr_db=None,
                 rel_drop=d, series="dass_small/mean @0.5") for L, d in ((30, 0.01), (60, 0.02), (300, 0.1))]
    fig4 += [dict(model="ast_small/sinusoidal", length_s=L, position=0.0, haystack="zeros", snr_db=None,
                  rel_drop=d, series="ast_small/sinusoidal @0.0") for L, d in ((30, 0.8), (60, 0.9))]
    _write(root, "04_niah/fig4_length.csv", fig4)
    _write(root, "04_niah/fig5_noise_snr.csv", [
        dict(model="dass_small/mean", length_s=300.0, position=0.5, haystack=h, snr_db=s, rel_drop=0.2 + s / 100)
        for h in ("white", "babble") for s in (0.0, 10.0)])
    _write(root, "03_aum_scratch/table1_ast_vs_aum.csv", [dict(model="AST", mAP=ast), dict(model="AuM", mAP=aum)])
    _write(root, "03_aum_scratch/table2_variant_cls.csv", [
        dict(block="Fo-Fo", head=0.1, middle=0.2, tail=0.15), dict(block="Fo-Bi", head=0.1, middle=0.3, tail=0.2),
        dict(block="Bi-Bi", head=0.1, middle=0.25, tail=0.2)])
    _write(root, "02_ssam_pretrain/table1.csv", [
        dict(model="SSAM-Tiny", pretraining="pretrained", mAP=0.5),
        dict(model="SSAST-Tiny", pretraining="pretrained", mAP=0.45),
        dict(model="SSAM-Tiny (random init)", pretraining="no pretraining", mAP=0.2),
        dict(model="SSAST-Tiny (random init)", pretraining="no pretraining", mAP=0.2 - 0.01)])
    _write(root, "02_ssam_pretrain/table2.csv", [
        dict(model=m, patch_size=p, n_patches=n, mAP=0.4 + (g if m == "SSAM-Tiny" else 0.0))
        for (p, n), g in zip((("(8, 16)", 125), ("(4, 16)", 250), ("(4, 8)", 500)), ssam_gap)
        for m in ("SSAST-Tiny", "SSAM-Tiny")])
    _write(root, "02_ssam_pretrain/table4.csv", [dict(model="SSAST-Tiny", ssm_type="None", mAP=0.4),
                                                 dict(model="SSAM-Tiny", ssm_type="Mamba", mAP=0.5),
                                                 dict(model="SSAM-Tiny", ssm_type="Vim", mAP=0.45)])
    return root


def _holds(table):
    return dict(zip(table.claim, table.holds))


def test_every_claim_holds_on_numbers_made_to_agree_with_the_papers(tmp_path):
    t = C.check_claims(_results(tmp_path))
    assert list(t.columns) == C.COLUMNS and len(t) == len(C.CLAIMS)
    assert set(t.holds) == {"yes"}, t[["claim", "holds", "ours"]].to_string()


def test_verdicts_follow_the_numbers(tmp_path):
    t = _holds(C.check_claims(_results(tmp_path, student_kd=0.20, teacher=0.25, aum=0.10, ast=0.20,
                                       ssam_gap=(0.08, 0.06, -0.01))))
    assert t["The student passes its teacher"] == "no"
    assert t["KD helps the student"] == "yes"                 # 0.20 > 0.10 still
    assert t["AuM is comparable to AST from scratch"] == "no"
    assert t["SSAM's lead over SSAST holds at every patch size and grows with the number of patches"] == "no"


def test_partly_when_one_half_of_a_claim_holds(tmp_path):
    root = _results(tmp_path)
    _write(root, "03_aum_scratch/table2_variant_cls.csv", [
        dict(block="Fo-Fo", head=0.1, middle=0.2, tail=0.15), dict(block="Fo-Bi", head=0.1, middle=0.3, tail=0.2),
        dict(block="Bi-Bi", head=0.3, middle=0.35, tail=0.2)])          # best Bi-Bi, head not the worst there
    row = C.check_claims(root).set_index("claim").loc["Fo-Bi with a middle CLS is best, head CLS worst"]
    assert row.holds == "no" and "Bi-Bi / middle" in row.ours
    _write(root, "03_aum_scratch/table2_variant_cls.csv", [
        dict(block="Fo-Bi", head=0.1, middle=0.3, tail=0.2), dict(block="Bi-Bi", head=0.1, middle=0.35, tail=0.2)])
    assert _holds(C.check_claims(root))["Fo-Bi with a middle CLS is best, head CLS worst"] == "partly"


def test_missing_csv_says_not_run_and_training_comes_from_the_runs(tmp_path):
    root = _results(tmp_path)
    (root / "02_ssam_pretrain/table4.csv").unlink()
    run = root / "01_distill/student_dass_small"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"stopped": {"reason": "plateau", "epochs": 12, "best_epoch": 7}}))
    t = C.check_claims(root).set_index("claim")
    assert t.loc["Unidirectional SSAM beats its Vim variant", "holds"] == "not run"
    assert "1 of 1 run(s) stopped on the plateau rule" in t.loc["KD helps the student", "training"]


def test_committed_gpu_results_and_markdown(tmp_path):
    """The committed GPU CSVs give a verdict for every claim; the Markdown table has one row each."""
    t = C.check_claims(REPO / "results/gpu")
    assert "not run" not in set(t.holds)
    md = C.claims_markdown(t)
    assert md.count("\n") == len(t) + 2 and "| holds at this scale? |" in md
    out = C.main(["--results", str(REPO / "results/gpu"), "--csv", str(tmp_path / "c.csv"),
                  "--markdown", str(tmp_path / "c.md")])
    assert pd.read_csv(tmp_path / "c.csv").shape[0] == len(out)
    assert (tmp_path / "c.md").read_text() == md


@pytest.mark.parametrize("claim", C.CLAIMS, ids=lambda c: c.source)
def test_every_claim_names_a_paper_table_or_figure(claim):
    assert any(w in claim.paper for w in ("Table", "Fig."))


@pytest.mark.parametrize("doc", ["README.md", "docs/results.md"])
def test_documented_claims_table_is_what_the_committed_csvs_give(doc):
    """The claims table in the README and docs/results.md is generated from results/gpu, and so is
    results/gpu/claims.csv: none of them may drift from the CSVs they were computed from."""
    t = C.check_claims(REPO / "results/gpu")
    assert C.claims_markdown(t) in (REPO / doc).read_text()
    stored = pd.read_csv(REPO / "results/gpu/claims.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(stored, t, check_dtype=False)
