"""ssLALM data (OpenAQA json, templated QA) and evaluation (wordllama similarity, CIDEr)."""
import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dasslib.lalm.data import CLOSED, caption_of, read_openaqa, stage_items, templated_qa  # noqa: E402


def test_templated_qa_covers_every_task(toy):
    items = templated_qa(toy["json"], toy["csv"], seed=0)
    assert {it.task for it in items} == {"classification", "caption", "yes_no", "count", "open"}
    assert len(items) == 4 * 6                                # per clip: 1 + 1 + 2 + 1 + 1
    first = [it for it in items if it.audio == 2]          # /m/a,/m/c
    by_task = {it.task: it for it in first}
    assert by_task["count"].answer == "Two."
    assert by_task["caption"].answer == caption_of(first[0].labels)
    yes_no = [it.answer for it in first if it.task == "yes_no"]
    assert yes_no == ["Yes.", "No."]
    assert templated_qa(toy["json"], toy["csv"], seed=0) == items           # deterministic
    assert {it.task for it in stage_items(items, "closed")} == set(CLOSED)
    assert {it.task for it in stage_items(items, "classification")} == {"classification"}
    with pytest.raises(ValueError, match="unknown task"):
        templated_qa(toy["json"], toy["csv"], tasks=("event_time",))


def test_read_openaqa(tmp_path):
    rows = [{"instruction": "What is the sound?", "input": "", "audio_id": "a/1.wav", "task": "cla_label",
             "output": "Label: Dog"},
            {"instruction": "Why?", "input": "Explain.", "audio_id": "/abs/2.wav", "output": "Because."}]
    path = tmp_path / "openaqa.json"
    path.write_text(json.dumps(rows))
    items = read_openaqa(path)
    assert [it.task for it in items] == ["classification", "open"]
    assert items[0].audio == str(tmp_path / "a/1.wav") and items[1].audio == "/abs/2.wav"
    assert items[1].question == "Why?\nExplain."
    path.write_text(json.dumps([{"instruction": "x"}]))
    with pytest.raises(ValueError, match="lacks"):
        read_openaqa(path)


def test_wordllama_similarity_on_fixed_strings():
    pytest.importorskip("wordllama")
    from dasslib.lalm.evaluate import WordLlamaEncoder, label_scores, similarity_metrics
    enc = WordLlamaEncoder()
    s = label_scores(["a dog barks loudly", "piano music playing"], ["dog", "piano", "violin"], enc)
    assert s.shape == (2, 3) and np.allclose(np.diag(s[:, :2]), [0.578, 0.816], atol=2e-3)
    assert (s.argmax(1) == [0, 1]).all()
    assert similarity_metrics(s, np.array([0, 1]), multi_label=False)["acc"] == 1.0
    multi = similarity_metrics(s, np.array([[1, 0, 0], [0, 1, 1]]), multi_label=True)
    assert 0.0 < multi["mAP"] <= 1.0


def test_cider():
    pytest.importorskip("pycocoevalcap")
    from dasslib.lalm.evaluate import cider
    refs = [["the sound of piano"], ["the sound of snare drum"], ["the sound of violin and flute"]]
    same, per = cider(refs, ["The sound of piano.", "the sound of snare drum", "The sound of violin and flute!"])
    other, _ = cider(refs, ["a cat", "the sound of piano", "dogs"])
    assert same > other and per.shape == (3,)
    with pytest.raises(ValueError, match="candidates"):
        cider(refs, ["x"])


@pytest.mark.parametrize("profile", ["ci", "gpu", "paper"])
def test_06_params_files_fit_the_notebook(profile):
    """Every params/<profile>/06_sslalm.yaml value has the type of the notebook's default; ci = defaults."""
    from pathlib import Path

    import nbformat

    from dasslib.notebook import check_params, load_params_file
    root = Path(__file__).resolve().parents[1]
    nb = nbformat.read(root / "notebooks" / "06_sslalm.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    ns = {}
    exec(cell.source.replace("_defaults = dict(globals())", ""), ns)
    defaults = {k: v for k, v in ns.items() if not k.startswith("_")}
    values = load_params_file(root / "params" / profile / "06_sslalm.yaml")
    check_params(dict(defaults, **values), defaults)
    if profile == "ci":
        assert {k: v for k, v in values.items() if v != defaults[k]} == {}


def test_fbank_lookup_reads_cached_rows_and_wav_files(toy):
    import torch

    from dasslib.experiments.sslalm import fbank_lookup
    cached = torch.randn(2, 64, 128)
    fbank_of = fbank_lookup(cached, (0.0, 1.0), target_length=64)
    assert torch.equal(fbank_of(1), cached[1]) and torch.equal(fbank_of(np.int64(0)), cached[0])
    assert tuple(fbank_of(os.path.join(toy["dir"], "clips/0.wav")).shape) == (64, 128)      # an OpenAQA item's wav
