"""Every number of the README's results table is read back from the committed file its row names.

A row is ``| result | value | source |``; the source names a file in backticks, a column in backticks and,
after ``where``, ``key=value`` pairs that select exactly one row (numbers compared as numbers). For an
executed notebook the column is a dotted path into its metadata (``papermill.duration``), for a json file into
the file. The value's first
number must equal the file's value rounded to the decimals the README prints.
"""
import json
import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def results_rows(text: str) -> list[tuple[str, str, str]]:
    """(result, value, source) of the table under the README's "Results at a glance" heading."""
    section = text.split("## Results at a glance", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("|") and len(cells) == 3 and "`" in cells[2]:
            rows.append(tuple(cells))
    return rows


def parse_source(source: str) -> tuple[str, str, dict]:
    """``"`file` `column` where k=v, k=v"`` -> (file, column, {k: v})."""
    ticks = re.findall(r"`([^`]+)`", source)
    if len(ticks) < 2:
        raise ValueError(f"source needs a `file` and a `column`: {source!r}")
    where = {}
    if " where " in source:
        for pair in source.split(" where ", 1)[1].split(","):
            key, _, value = pair.strip().partition("=")
            where[key.strip()] = value.strip()
    return ticks[0], ticks[1], where


def _same(cell, wanted: str) -> bool:
    try:
        return float(cell) == float(wanted)
    except (TypeError, ValueError):
        return str(cell) == wanted


def lookup(file: str, column: str, where: dict) -> float:
    """The one value the source names."""
    path = ROOT / file
    if path.suffix in (".ipynb", ".json"):      # a dotted path into a notebook's metadata / a json file
        node = json.loads(path.read_text())
        node = node["metadata"] if path.suffix == ".ipynb" else node
        for part in column.split("."):
            node = node[part]
        return float(node)
    header = path.read_text().split("\n", 1)[0]
    table = pd.read_csv(path, skiprows=1 if header.startswith("#") else 0)   # a "# device=..." first line
    rows = table
    for key, value in where.items():
        rows = rows[[_same(cell, value) for cell in rows[key]]]
    if len(rows) != 1:
        raise AssertionError(f"{file} where {where}: {len(rows)} rows, expected exactly one")
    return float(rows[column].iloc[0])


def matches(printed: str, actual: float) -> bool:
    """``printed`` (as the README shows it) is ``actual`` rounded to the printed decimals."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return round(actual, decimals) == float(printed)


def test_parser_on_hand_made_rows(tmp_path, monkeypatch):
    text = ("## Results at a glance\n\n| result | value | source |\n| --- | --- | --- |\n"
            "| speed | 2.30x | `t.csv` `ratio` where model=a, batch=32 |\n## Next\n| x | 1 | `t.csv` `ratio` |\n")
    assert results_rows(text) == [("speed", "2.30x", "`t.csv` `ratio` where model=a, batch=32")]
    assert parse_source(results_rows(text)[0][2]) == ("t.csv", "ratio", {"model": "a", "batch": "32"})
    pd.DataFrame({"model": ["a", "a", "b"], "batch": [32.0, 1.0, 32.0], "ratio": [2.297, 9.0, 1.0]}).to_csv(
        tmp_path / "t.csv", index=False)
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert lookup("t.csv", "ratio", {"model": "a", "batch": "32"}) == 2.297
    with pytest.raises(AssertionError, match="2 rows"):
        lookup("t.csv", "ratio", {"model": "a"})
    assert matches("2.30", 2.297) and not matches("2.31", 2.297) and matches("2799", 2799.2)
    assert not matches("0.104", 0.1049)


ROWS = results_rows((ROOT / "README.md").read_text())


def test_the_readme_has_a_results_table():
    assert len(ROWS) >= 15


@pytest.mark.parametrize("result,value,source", ROWS, ids=[r[0][:60] for r in ROWS])
def test_readme_number_is_the_files(result, value, source):
    printed = NUMBER.search(value)
    assert printed, f"no number in {value!r}"
    file, column, where = parse_source(source)
    actual = lookup(file, column, where)
    assert matches(printed.group(), actual), f"{result}: README {printed.group()}, {file} {column} {actual}"


def long_input_rows(text: str) -> list[list[str]]:
    """Cells of the README's "Long inputs in one pass" table (model, path, hours, seconds, peak, per hour)."""
    section = text.split("### Long inputs in one pass", 1)[1].split("\n#", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in section.splitlines()
            if line.startswith("| dass")]


def test_the_long_input_table_is_the_files():
    text = (ROOT / "README.md").read_text()
    source = re.search(r"`(results/gpu/long_input_[^`]+\.csv)`", text.split("### Long inputs in one pass", 1)[1])
    table = pd.read_csv(ROOT / source.group(1))
    rows = long_input_rows(text)
    assert len(rows) == len(table)
    for model, path, hours, seconds, peak, per_hour in rows:
        row = table[(table.model == model) & (table.path == path) & (table.length_s == float(hours) * 3600)]
        assert len(row) == 1, (model, path, hours)
        row = row.iloc[0]
        if seconds.startswith("does not fit"):
            assert not row.fits and str(round(row.max_fit_s)) in seconds
            continue
        assert row.fits
        for printed, column in ((seconds, "seconds"), (peak, "peak_mem_gib"), (per_hour, "gib_per_hour")):
            assert matches(printed, row[column]), (model, path, hours, column, printed, row[column])
