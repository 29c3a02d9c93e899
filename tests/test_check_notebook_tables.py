"""scripts/check_notebook_tables.py: the CPU notebook tables against their golden copies, floats within a
tolerance, text and integers exactly, a missing table an error."""
import shutil

import pandas as pd

from scripts import check_notebook_tables as C


def _run_copy(tmp_path):
    run = tmp_path / "outputs"
    shutil.copytree(C.GOLDEN, run)
    return run


def test_the_golden_tables_match_themselves_and_name_every_checked_notebook(tmp_path):
    assert {p.parent.name for p in C.GOLDEN.glob("*/*.csv")} == {"02_ssam_pretrain", "06_sslalm"}
    assert C.main([str(_run_copy(tmp_path))]) == 0


def test_floats_within_the_tolerance_pass_and_beyond_it_fail(tmp_path):
    run = _run_copy(tmp_path)
    table = run / "06_sslalm" / "table1.csv"
    t = pd.read_csv(table)
    t.loc[0, "cls_mAP"] += 0.016          # what an AMD machine printed against this Intel one
    t.to_csv(table, index=False)
    assert C.main([str(run)]) == 0
    t.loc[0, "cls_mAP"] += 0.05
    t.to_csv(table, index=False)
    assert C.main([str(run)]) == 1
    assert any("cls_mAP" in p for p in C.compare(table, C.GOLDEN / "06_sslalm" / "table1.csv", 0.03))


def test_text_integers_and_missing_tables_are_exact(tmp_path, capsys):
    run = _run_copy(tmp_path)
    table = run / "06_sslalm" / "table1.csv"
    t = pd.read_csv(table)
    t.loc[1, "trainable"] += 1
    t.loc[2, "encoder"] = "dass_small"
    t.to_csv(table, index=False)
    problems = C.compare(table, C.GOLDEN / "06_sslalm" / "table1.csv", 0.03)
    assert len(problems) == 2 and any("trainable" in p for p in problems) and any("encoder" in p for p in problems)
    (run / "02_ssam_pretrain" / "combined.csv").unlink()
    assert C.main([str(run)]) == 1
    assert "missing" in capsys.readouterr().out
