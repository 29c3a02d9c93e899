"""AudioSet-format datafiles and label csvs: parsing, path resolution, every malformed case."""
import json
import os
import pathlib

import numpy as np
import pytest
import soundfile as sf

from dasslib.data import Entry, read_datafile, read_label_csv, validate_datafile, write_datafile, write_label_csv


def write_json(path, obj):
    pathlib.Path(path).write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return str(path)


def test_label_csv_round_trip_with_quoted_names(tmp_path):
    path = tmp_path / "labels.csv"
    write_label_csv(path, ["/m/05r5c", "/m/07y_7"], ["Piano", "Violin, fiddle"])
    assert '"Violin, fiddle"' in path.read_text()
    labels = read_label_csv(path)
    assert labels.mids == ("/m/05r5c", "/m/07y_7")
    assert labels.names == ("Piano", "Violin, fiddle")
    assert labels.num_classes == 2 and labels.index == {"/m/05r5c": 0, "/m/07y_7": 1}


def test_label_csv_rows_in_any_order(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text('index,mid,display_name\n1,/m/b,B\n0,/m/a,"A, a"\n')
    assert read_label_csv(path).mids == ("/m/a", "/m/b")


@pytest.mark.parametrize("text, match", [
    ("idx,mid,display_name\n0,/m/a,A\n", "lacks column"),
    ("index,mid,display_name\nzero,/m/a,A\n", "not an integer"),
    ("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n", "without gaps"),
    ("index,mid,display_name\n0,/m/a,A\n1,/m/a,B\n", "duplicate mid"),
    ("index,mid,display_name\n0,/m/a,A\n0,/m/b,B\n", "duplicate index"),
    ("index,mid,display_name\n0,,A\n", "empty mid"),
    ("index,mid,display_name\n", "no classes"),
])
def test_bad_label_csv(tmp_path, text, match):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        read_label_csv(path)
    assert str(path) in str(err.value)


def test_missing_label_csv(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_label_csv(tmp_path / "none.csv")


def test_multi_hot_and_unknown_label(toy):
    labels = read_label_csv(toy["csv"])
    np.testing.assert_array_equal(labels.multi_hot(["/m/a", "/m/c"]), [1, 0, 1])
    assert labels.multi_hot([]).dtype == np.float32
    with pytest.raises(ValueError, match=r"unknown label '/m/zz' \(used by clip.wav\)"):
        labels.multi_hot(["/m/a", "/m/zz"], source="clip.wav")


def test_relative_paths_resolve_against_the_json_folder(toy, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    entries = read_datafile(toy["json"])
    assert entries[0] == Entry(os.path.join(toy["dir"], "clips", "0.wav"), ("/m/a",))
    assert entries[2].labels == ("/m/a", "/m/c")
    assert all(os.path.isfile(e.wav) for e in entries)


def test_absolute_paths_and_spaces_in_labels(tmp_path):
    path = write_json(tmp_path / "d.json",
                      {"data": [{"wav": "/abs/x.wav", "labels": "/m/a, /m/b"}]})
    assert read_datafile(path) == [Entry("/abs/x.wav", ("/m/a", "/m/b"))]


def test_write_datafile_stores_relative_paths(tmp_path):
    path = tmp_path / "sub" / "d.json"
    path.parent.mkdir()
    write_datafile(path, [(tmp_path / "sub" / "w" / "0.wav", ["/m/a", "/m/b"]),
                          ("/other/1.wav", ["/m/c"])])
    raw = json.loads(path.read_text())
    assert raw == {"data": [{"wav": os.path.join("w", "0.wav"), "labels": "/m/a,/m/b"},
                            {"wav": "/other/1.wav", "labels": "/m/c"}]}
    assert read_datafile(path)[0].wav == str(tmp_path / "sub" / "w" / "0.wav")


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid json"),
    ([1, 2], "list under 'data'"),
    ({"items": []}, "list under 'data'"),
    ({"data": {"wav": "a.wav"}}, "list under 'data'"),
    ({"data": []}, "lists no clips"),
    ({"data": ["a.wav"]}, "entry 0: must be an object"),
    ({"data": [{"labels": "/m/a"}]}, "entry 0: 'wav' must be a non-empty string"),
    ({"data": [{"wav": 3, "labels": "/m/a"}]}, "entry 0: 'wav' must be a non-empty string"),
    ({"data": [{"wav": "a.wav"}]}, r"entry 0 \(a.wav\): 'labels' must be"),
    ({"data": [{"wav": "a.wav", "labels": ["/m/a"]}]}, r"entry 0 \(a.wav\): 'labels' must be"),
    ({"data": [{"wav": "a.wav", "labels": " , "}]}, r"entry 0 \(a.wav\): no labels"),
])
def test_malformed_datafile(tmp_path, content, match):
    path = write_json(tmp_path / "bad.json", content)
    with pytest.raises(ValueError, match=match) as err:
        read_datafile(path)
    assert path in str(err.value)


def test_malformed_entries_are_all_reported_at_once(tmp_path):
    path = write_json(tmp_path / "bad.json", {"data": [
        {"wav": "ok.wav", "labels": "/m/a"}, {"wav": "x.wav"}, 7, {"labels": "/m/a"}]})
    with pytest.raises(ValueError) as err:
        read_datafile(path)
    message = str(err.value)
    assert "entry 1 (x.wav)" in message and "entry 2" in message and "entry 3" in message
    assert "entry 0" not in message


def test_missing_datafile(tmp_path):
    with pytest.raises(ValueError, match="datafile not found"):
        read_datafile(tmp_path / "none.json")


@pytest.fixture
def messy(toy, tmp_path, wav_writer, tone):
    """Datafile with one good clip and one of each problem."""
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio at all " * 10)
    sf.write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    noise = 0.01 * np.random.default_rng(0).standard_normal(16000)
    full = pathlib.Path(wav_writer("full.flac", tone(300.0) + noise))
    (tmp_path / "cut.flac").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    data = [{"wav": "clips/0.wav", "labels": "/m/a"},
            {"wav": "missing.wav", "labels": "/m/a"},
            {"wav": "empty.wav", "labels": "/m/b"},
            {"wav": "text.wav", "labels": "/m/c"},
            {"wav": "zero.wav", "labels": "/m/a"},
            {"wav": "clips/1.wav", "labels": "/m/b,/m/unknown"},
            {"wav": "cut.flac", "labels": "/m/a"},
            {"wav": "clips/2.wav"}]
    return write_json(tmp_path / "messy.json", {"data": data})


def test_validate_reports_every_problem(messy, toy, tmp_path):
    problems = validate_datafile(messy, toy["csv"], raise_on_error=False)
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert f"audio file not found: {tmp_path / 'missing.wav'}" in text
    assert f"cannot read audio file {tmp_path / 'empty.wav'}" in text
    assert f"cannot read audio file {tmp_path / 'text.wav'}" in text
    assert f"audio file has no samples: {tmp_path / 'zero.wav'}" in text
    assert f"{tmp_path / 'clips' / '1.wav'}: unknown label(s) ['/m/unknown']" in text
    assert "entry 7 (clips/2.wav): 'labels' must be" in text
    assert "cut.flac" not in text  # its header is intact: only decoding finds it
    with pytest.raises(ValueError, match="6 problem"):
        validate_datafile(messy, toy["csv"])


def test_validate_decode_finds_corrupt_data(messy, toy, tmp_path):
    problems = validate_datafile(messy, toy["csv"], check_audio="decode", raise_on_error=False)
    assert len(problems) == 7
    assert any(str(tmp_path / "cut.flac") in p for p in problems)


def test_validate_good_datafile_and_options(toy):
    assert validate_datafile(toy["json"], toy["csv"], check_audio="decode") == []
    assert validate_datafile(toy["json"], toy["csv"], check_audio=False) == []
    with pytest.raises(ValueError, match="check_audio"):
        validate_datafile(toy["json"], toy["csv"], check_audio="full")
