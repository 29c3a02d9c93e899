"""AudioSet-format datafiles and label csvs: parsing, path resolution, every malformed case."""
import json
import os
import pathlib

import numpy as np
import pytest
import soundfile as sf

from dasslib.data import (
    Entry,
    LabelSet,
    read_datafile,
    read_label_csv,
    validate_datafile,
    write_datafile,
    write_label_csv,
)


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


# --- every message word for word, and the edges the messages describe ---------------------------------------

@pytest.mark.parametrize("text, message", [
    ("idx,mid,display_name\n0,/m/a,A\n",
     "label csv {} lacks column(s) ['index']; header must be index,mid,display_name"),
    ("index,mid,display_name\n0,/m/a,A\nzero,/m/b,B\n", "label csv {} line 3: index 'zero' is not an integer"),
    ("index,mid,display_name\n0,/m/a,A\n1,/m/b,B\n2, ,C\n", "label csv {} line 4: empty mid"),
    ("index,mid,display_name\n0,/m/a,A\n0,/m/b,B\n", "label csv {} line 3: duplicate index 0"),
    ("index,mid,display_name\n0,/m/a,A\n1,/m/b,B\n3,/m/c,C\n", "label csv {}: indices must be 0..2 without gaps"),
    ("index,mid,display_name\n0,/m/a,A\n1,/m/b,B\n2,/m/a,C\n3,/m/b,D\n",
     "label csv {}: duplicate mid(s) ['/m/a', '/m/b']"),
    ("index,mid,display_name\n", "label csv {} has no classes"),
])
def test_label_csv_messages(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        read_label_csv(path)
    assert str(err.value) == message.format(path)


def test_label_csv_keeps_its_path_and_reads_a_row_without_a_name(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("index,mid,display_name\n0,/m/a\n1,/m/b,  Beta  \n")
    labels = read_label_csv(path)
    assert labels.path == str(path)
    assert labels.names == ("", "Beta")


def test_label_csv_round_trips_a_name_with_a_line_break(tmp_path):
    """A quoted field may hold CR LF: the csv is read and written without newline translation."""
    path = tmp_path / "labels.csv"
    write_label_csv(path, ["/m/a", "/m/b"], ["two\r\nlines", "one\nline"])
    assert path.read_bytes() == b'index,mid,display_name\r\n0,/m/a,"two\r\nlines"\r\n1,/m/b,"one\nline"\r\n'
    assert read_label_csv(path).names == ("two\r\nlines", "one\nline")


def test_multi_hot_messages(toy):
    labels = read_label_csv(toy["csv"])
    with pytest.raises(ValueError) as err:
        labels.multi_hot(["/m/zz"])
    assert str(err.value) == f"unknown label '/m/zz': not in {toy['csv']}"
    with pytest.raises(ValueError) as err:
        labels.multi_hot(["/m/a", "/m/zz"], source="clip.wav")
    assert str(err.value) == f"unknown label '/m/zz' (used by clip.wav): not in {toy['csv']}"
    unnamed = LabelSet(("/m/a",), ("A",))               # built by hand: no csv path
    with pytest.raises(ValueError) as err:
        unnamed.multi_hot(["/m/b"])
    assert str(err.value) == "unknown label '/m/b': not in the label csv"


def test_malformed_entries_message_in_order(tmp_path):
    """Each bad entry is reported and parsing goes on with the next one."""
    path = write_json(tmp_path / "bad.json", {"data": [
        {"labels": "/m/a"}, {"wav": "b.wav", "labels": " ,"}, {"wav": "c.wav", "labels": 5}, 7,
        {"wav": "", "labels": "/m/a"}]})
    with pytest.raises(ValueError) as err:
        read_datafile(path)
    assert str(err.value) == (
        f"datafile {path} entry 0: 'wav' must be a non-empty string, got None\n"
        f"datafile {path} entry 1 (b.wav): no labels\n"
        f"datafile {path} entry 2 (c.wav): 'labels' must be a comma-separated string, got 5\n"
        f"datafile {path} entry 3: must be an object, got int\n"
        f"datafile {path} entry 4: 'wav' must be a non-empty string, got ''")


def test_validate_keeps_checking_after_a_bad_entry(toy, tmp_path):
    good = os.path.join(toy["dir"], "clips", "0.wav")
    path = write_json(tmp_path / "d.json", {"data": [
        {"wav": 3, "labels": "/m/a"}, {"wav": good, "labels": "/m/zz"},
        {"wav": "x.wav", "labels": ""}, {"wav": good, "labels": "/m/yy"}]})
    assert validate_datafile(path, toy["csv"], raise_on_error=False) == [
        f"datafile {path} entry 0: 'wav' must be a non-empty string, got 3",
        f"datafile {path} entry 2 (x.wav): no labels",
        f"{good}: unknown label(s) ['/m/zz'] (not in {toy['csv']})",
        f"{good}: unknown label(s) ['/m/yy'] (not in {toy['csv']})"]
    with pytest.raises(ValueError) as err:
        validate_datafile(path, toy["csv"])
    assert str(err.value) == (
        f"4 problem(s) in {path}:\n"
        f"datafile {path} entry 0: 'wav' must be a non-empty string, got 3\n"
        f"datafile {path} entry 2 (x.wav): no labels\n"
        f"{good}: unknown label(s) ['/m/zz'] (not in {toy['csv']})\n"
        f"{good}: unknown label(s) ['/m/yy'] (not in {toy['csv']})")


def test_validate_empty_datafile_and_one_without_a_good_entry(toy, tmp_path):
    empty = write_json(tmp_path / "empty.json", {"data": []})
    assert validate_datafile(empty, toy["csv"], raise_on_error=False) == [f"datafile {empty} lists no clips"]
    assert validate_datafile(pathlib.Path(empty), toy["csv"], raise_on_error=False) == [
        f"datafile {empty} lists no clips"]
    # every entry malformed: those problems, and no "lists no clips" on top
    bad = write_json(tmp_path / "bad.json", {"data": [{"wav": "a.wav"}]})
    assert validate_datafile(bad, toy["csv"], raise_on_error=False) == [
        f"datafile {bad} entry 0 (a.wav): 'labels' must be a comma-separated string, got None"]


def test_validate_check_audio_message(toy):
    with pytest.raises(ValueError) as err:
        validate_datafile(toy["json"], toy["csv"], check_audio=True)
    assert str(err.value) == "check_audio must be 'header', 'decode' or False, got True"


@pytest.mark.parametrize("check_audio, expected", [
    ("header", ["audio file too short: 399 samples at 16000 Hz (24.9 ms), less than one 25 ms fbank frame: {a}",
                "audio file too short: 199 samples at 8000 Hz (24.9 ms), less than one 25 ms fbank frame: {b}"]),
    # decoding resamples to 16 kHz: 199 samples at 8 kHz are 398 at 16 kHz
    ("decode", ["audio file too short: 399 samples at 16000 Hz (24.9 ms), less than one 25 ms fbank frame: {a}",
                "audio file too short: 398 samples at 16000 Hz (24.9 ms), less than one 25 ms fbank frame: {b}"]),
])
def test_validate_reports_clips_shorter_than_one_fbank_frame(toy, tmp_path, wav_writer, check_audio, expected):
    """25 ms is 400 samples at 16 kHz, 200 at 8 kHz: one sample less is too short, exactly one frame is fine."""
    rng = np.random.default_rng(0)
    clips = {"a": wav_writer("a.wav", 0.1 * rng.standard_normal(399)),
             "ok16": wav_writer("ok16.wav", 0.1 * rng.standard_normal(400)),
             "b": wav_writer("b.wav", 0.1 * rng.standard_normal(199), sr=8000),
             "ok8": wav_writer("ok8.wav", 0.1 * rng.standard_normal(200), sr=8000)}
    path = write_json(tmp_path / "short.json", {"data": [{"wav": w, "labels": "/m/a"} for w in clips.values()]})
    problems = validate_datafile(path, toy["csv"], check_audio=check_audio, raise_on_error=False)
    assert problems == [e.format(**clips) for e in expected]


@pytest.fixture
def ascii_locale():
    """The C locale's ASCII as the default text encoding for the test (where Python is not in UTF-8 mode,
    as under a non-UTF-8 locale such as Windows' cp1252): files must be read as UTF-8 explicitly."""
    import locale
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


def test_label_csv_and_datafile_are_read_as_utf8_whatever_the_locale(tmp_path, ascii_locale):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes("index,mid,display_name\n0,/m/a,Café crème\n".encode())
    assert read_label_csv(csv_path).names == ("Café crème",)
    json_path = tmp_path / "d.json"
    json_path.write_bytes('{"data": [{"wav": "clips/café.wav", "labels": "/m/a"}]}'.encode())
    assert read_datafile(json_path) == [Entry(str(tmp_path / "clips" / "café.wav"), ("/m/a",))]
