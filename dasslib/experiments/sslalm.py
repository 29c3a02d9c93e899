"""Notebook 06 (ssLALM, issue #19): audio encoder + projector + LM with LoRA, trained in LTU's
four stages on templated QA from the embedded dataset, scored the paper's way (Table I):
classification by text similarity of a generated caption to ``"sound of <label>"`` (mAP, the
embedded set being multi-label) and caption CIDEr; plus yes/no accuracy and a timing of the
Mamba LM's recurrent generation against transformers' ``MambaForCausalLM.generate``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from dasslib.lalm.data import CAPTION_PROMPT, caption_of, read_openaqa, stage_items, templated_qa
from dasslib.lalm.evaluate import cider, label_scores, similarity_metrics
from dasslib.lalm.lm import (
    apply_lora,
    count_lora_parameters,
    load_lm,
    load_tokenizer,
    tiny_llama,
    tiny_mamba,
    train_bpe_tokenizer,
)
from dasslib.lalm.model import SSLALM, STAGES, AudioEncoder, format_prompt
from dasslib.lalm.train import pretrain_lm, run_stages
from dasslib.metrics import chance_level

__all__ = ["load_fbanks", "fbank_lookup", "qa_items", "make_tokenizer", "build_encoder", "build_lm", "train_system",
           "evaluate_system", "generation_timing", "text_encoder_for", "caption_of", "plot_losses", "plot_table",
           "read_results", "summary", "PROFILE_SCOPES"]

PROFILE_SCOPES = {
    "ci": "tiny encoders and LMs (random init, a few dozen CPU steps) on the small embedded `ci` set. It shows "
          "that every stage, the generation and the scoring run end to end; its scores are those of models "
          "that have barely trained and say nothing about ssLALM against its baselines.",
    "gpu": "DASS-Small and an AST encoder, small Mamba / LLaMA LMs pre-trained on the templated text, all four "
           "stages on the embedded `gpu` set. It can compare the three systems on this synthetic data; the "
           "numbers are not comparable to the paper's Table I (no AudioSet, no OpenAQA, no 2.8B / 7B LMs).",
    "paper": "the paper's setting (official DASS checkpoint, local mamba-2.8b-hf and LLaMA-7B folders, OpenAQA): "
             "its numbers can be set against Table I.",
}


def load_fbanks(paths: dict, stats: tuple, target_length: int = 1024, max_eval: int | None = None) -> dict:
    """{split: (fbanks (N, T, F) float32, multi-hot targets (N, C))} of the train / eval sets
    (the first ``max_eval`` eval clips when given)."""
    from dasslib.data import AudioConf, AudioDataset
    conf = AudioConf(mean=stats[0], std=stats[1], target_length=int(target_length))
    out = {}
    for split in ("train", "eval"):
        ds = AudioDataset(paths[f"{split}_json"], paths["label_csv"], conf)
        n = len(ds) if split == "train" or not max_eval else min(len(ds), int(max_eval))
        xs, ys = zip(*(ds[i] for i in range(n)))
        out[split] = (torch.stack(xs), torch.stack(ys))
    return out


def qa_items(paths: dict, seed: int = 0, max_eval: int | None = None, openaqa_json=None) -> dict:
    """{split: templated QA items} (:func:`dasslib.lalm.data.templated_qa`); eval items of the
    first ``max_eval`` clips when given. ``openaqa_json``: the training items come from an
    OpenAQA / LTU json instead (their audio are wav paths)."""
    out = {s: templated_qa(paths[f"{s}_json"], paths["label_csv"], seed=seed + i)
           for i, s in enumerate(("train", "eval"))}
    if openaqa_json:
        out["train"] = read_openaqa(openaqa_json)
    if max_eval:
        out["eval"] = [it for it in out["eval"] if it.audio < int(max_eval)]
    return out


def fbank_lookup(fbanks, stats: tuple, target_length: int = 1024):
    """``fbank_of(audio)``: row ``audio`` of the cached ``fbanks`` (N, T, F) for an int, else the
    normalized fbank of the wav file ``audio`` (OpenAQA items)."""
    from dasslib.data.audio import load_audio
    from dasslib.data.fbank import normalize_fbank, wav2fbank

    def fbank_of(audio):
        if isinstance(audio, (int, np.integer)):
            return fbanks[int(audio)]
        return normalize_fbank(wav2fbank(load_audio(audio), target_length=int(target_length)), *stats)
    return fbank_of


def _texts(items) -> list:
    return [format_prompt(it.question) + it.answer for it in items]


def make_tokenizer(items, folder=None, vocab_size: int = 1000):
    """A local tokenizer folder, else a byte-level BPE trained on the train items' text."""
    return load_tokenizer(folder) if folder else train_bpe_tokenizer(_texts(items), vocab_size=vocab_size)


def build_encoder(section: dict, paths: dict, stats: tuple, out_dir, train: dict | None = None,
                  loader: dict | None = None, target_length: int = 1024) -> AudioEncoder:
    """A registry classifier ``{name, <overrides>, [checkpoint]}`` without its head, sized for
    ``target_length`` frames: loaded from ``checkpoint``, trained as a classifier first when
    ``train`` is given, else random."""
    from dasslib.models import create

    from .common import fit_input, train_classifier
    audio = dict(target_length=int(target_length))
    section = fit_input(dict(section), audio)
    name, checkpoint = section.pop("name"), section.pop("checkpoint", None)
    if checkpoint or train:
        model, _ = train_classifier(Path(out_dir) / f"encoder_{name}", dict(name=name, **section), paths, stats,
                                    dict(train or {}), dict(loader or {}), checkpoint=checkpoint, audio=audio)
        model.reset_classifier(0)
    else:
        model = create(name, num_classes=0, **section)
    return AudioEncoder(model)


def build_lm(kind: str, tokenizer, section: dict, texts, folder=None, pretrain: dict | None = None,
             lora: dict | None = None, device="cpu", seed: int = 0):
    """An LM with LoRA: a local folder (``load_lm``), else a small random ``kind`` ("mamba" or
    "llama") pre-trained on ``texts``. Returns (lm, pre-training log)."""
    torch.manual_seed(seed)
    log = []
    if folder:
        lm = load_lm(folder).to(device)
    else:
        if kind == "mamba":
            lm = tiny_mamba(len(tokenizer), **section)
        elif kind == "llama":
            lm = tiny_llama(len(tokenizer), **section)
        else:
            raise ValueError(f"unknown LM kind {kind!r}; choose mamba or llama")
        lm = lm.to(device)
        if pretrain:
            log = pretrain_lm(lm, tokenizer, texts, seed=seed, **pretrain)
    return apply_lora(lm, **(lora or {})), log


def _params(module, trainable=False):
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def train_system(name: str, spec: dict, ctx: dict) -> dict:
    """Build and train one system (``spec``: {encoder, lm}) through the four stages.
    ``ctx``: the shared pieces (see the notebook). Returns dict(model, log, lm_log, counts)."""
    enc = build_encoder(ctx["encoders"][spec["encoder"]], ctx["paths"], ctx["stats"], ctx["out"],
                        ctx["encoder_train"], ctx["loader"], ctx["target_length"])
    lm, lm_log = build_lm(spec["lm"], ctx["tokenizer"], ctx["lms"][spec["lm"]], _texts(ctx["items"]["train"]),
                          ctx["lm_folders"].get(spec["lm"]), ctx["lm_pretrain"], ctx["lora"], ctx["device"],
                          ctx["seed"])
    torch.manual_seed(ctx["seed"])
    model = SSLALM(enc, lm, ctx["tokenizer"], grid=tuple(ctx["grid"])).to(ctx["device"])
    fbank_of = fbank_lookup(ctx["fbanks"]["train"][0], ctx["stats"], ctx["target_length"])
    items = ctx["items"]["train"]
    by_stage = {k: stage_items(items, STAGES[k]["tasks"]) for k in STAGES}
    log = run_stages(model, by_stage, fbank_of, ctx["stages"], batch_size=ctx["batch_size"],
                     accum=ctx["accum"], warmup_steps=ctx["warmup_steps"], seed=ctx["seed"], amp=ctx["amp"],
                     max_items=ctx["max_items"])
    model.save_trainable(Path(ctx["out"]) / f"{name}_trainable.pt")
    counts = dict(trainable=_params(model.encoder) + _params(model.projector) + count_lora_parameters(model.lm),
                  total=_params(model))
    return dict(model=model, log=log, lm_log=lm_log, counts=counts)


@torch.no_grad()
def _generate(model, fbanks, questions, batch_size, **gen):
    out = []
    for i in range(0, len(questions), batch_size):
        out += model.generate(fbanks[i:i + batch_size].to(model.device), questions[i:i + batch_size], **gen)
    return out


def evaluate_system(model, fbanks, targets, label_names, eval_items, encoder, batch_size: int = 16,
                    **gen) -> tuple:
    """Table I metrics of one system on the eval set: captions (prompt ``CAPTION_PROMPT``) ->
    similarity mAP against "sound of <label>" and CIDEr against the templated caption; yes/no
    accuracy on the templated yes/no questions; ``chance_mAP``: a constant predictor's mAP on
    the same clips. Returns (metrics dict, captions list)."""
    captions = _generate(model, fbanks, [CAPTION_PROMPT] * len(fbanks), batch_size, **gen)
    scores = label_scores(captions, label_names, encoder)
    cls = similarity_metrics(scores, targets.numpy(), multi_label=True)
    refs = [[caption_of([label_names[j] for j in np.flatnonzero(t)])] for t in targets.numpy()]
    cid, _ = cider(refs, captions)
    yn = [it for it in eval_items if it.task == "yes_no"]
    answers = _generate_items(model, fbanks, yn, batch_size, **gen)
    hits = [a.lower().startswith(it.answer[:-1].lower()) for a, it in zip(answers, yn)]
    acc = float(np.mean(hits)) if yn else float("nan")
    chance = chance_level(targets)["mAP"]
    return dict(cls_mAP=cls["mAP"], chance_mAP=chance, caption_CIDEr=cid, yes_no_acc=acc), captions


def _generate_items(model, fbanks, items, batch_size, **gen):
    out = []
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        fb = torch.stack([fbanks[it.audio] for it in chunk])
        out += model.generate(fb.to(model.device), [it.question for it in chunk], **gen)
    return out


def generation_timing(hidden_size: int, num_layers: int, vocab_size: int, prompt_tokens: int, new_tokens: int,
                      device, folder, seed: int = 0, repeats: int = 2) -> dict:
    """Greedy generation of ``new_tokens`` after a random prompt, batch 1, fp32: our Mamba LM's
    recurrent steps against transformers' ``MambaForCausalLM.generate`` on the same random
    weights (saved to and loaded from ``folder``), and on CUDA our steps replayed as one CUDA graph.
    Best of ``repeats`` timings each; also whether each produced transformers' tokens."""
    from transformers import MambaConfig, MambaForCausalLM

    from dasslib.lalm import MambaLM
    from dasslib.lalm.graphs import GraphedStep
    torch.manual_seed(seed)
    ref = MambaForCausalLM(MambaConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                                       num_hidden_layers=num_layers)).eval()
    from transformers.utils import logging as hf_logging
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()               # no widget in a stored notebook
    try:
        ref.save_pretrained(folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    ours = MambaLM.from_pretrained(folder).to(device).eval()
    ref = ref.to(device)
    ids = torch.randint(0, vocab_size, (1, prompt_tokens), device=device)

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    @torch.no_grad()
    def run_ours(graph=False):     # graph: the steps replayed as one CUDA graph (dasslib.lalm.graphs)
        logits, state = ours(input_ids=ids, return_state=True)
        nxt, toks = logits[:, -1].argmax(-1), []
        stepper = GraphedStep(ours, state, nxt) if graph else None
        for _ in range(new_tokens):
            toks.append(nxt)
            if stepper is None:
                logits, state = ours.step(nxt, state)
            else:
                logits = stepper(nxt)
            nxt = logits.argmax(-1)
        return torch.stack(toks, 1)

    @torch.no_grad()
    def run_ref():
        return ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                            min_new_tokens=new_tokens, do_sample=False)[:, prompt_tokens:]

    runs = [("dasslib MambaLM (recurrent)", run_ours), ("transformers MambaForCausalLM.generate", run_ref)]
    if torch.device(device).type == "cuda":
        runs.append(("dasslib MambaLM (recurrent, CUDA graph)", lambda: run_ours(graph=True)))
    res = {}
    for name, fn in runs:
        best, toks = float("inf"), None
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            toks = fn()
            sync()
            best = min(best, time.perf_counter() - t0)
        res[name] = (best, toks)
    ref_toks = res["transformers MambaForCausalLM.generate"][1].cpu()
    return [dict(implementation=k, seconds=v[0], tokens_per_s=new_tokens / v[0], new_tokens=new_tokens,
                 hidden_size=hidden_size, num_layers=num_layers,
                 same_tokens=bool(torch.equal(v[1].cpu(), ref_toks)), device=str(device))
            for k, v in res.items()]


def plot_losses(log):
    """Training loss per optimizer step, one panel per stage, one line per system."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    stages = sorted(log["stage"].unique())
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 3), sharey=True, squeeze=False)
    for ax, k in zip(axes[0], stages):
        sns.lineplot(data=log[log["stage"] == k], x="step", y="loss", hue="system", ax=ax, legend=k == stages[-1])
        ax.set_title(f"stage {k}: {STAGES[int(k)]['tasks']}")
    fig.tight_layout()
    return fig


def plot_table(table):
    """Table I's columns as bars: classification mAP by text similarity, caption CIDEr, yes/no accuracy."""
    import matplotlib.pyplot as plt
    cols = ["cls_mAP", "caption_CIDEr", "yes_no_acc"]
    fig, axes = plt.subplots(1, len(cols), figsize=(10, 3))
    for ax, c in zip(axes, cols):
        ax.bar(table["system"], table[c], color=["C0", "C1", "C2", "C3"][:len(table)])
        ax.set_title(c)
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def read_results(out) -> dict:
    """The CSVs a 06 run wrote: table1, stage_losses, generation_timing, captions (those present)."""
    import pandas as pd
    out = Path(out)
    return {k: pd.read_csv(out / f"{k}.csv") for k in ("table1", "stage_losses", "generation_timing", "captions")
            if (out / f"{k}.csv").is_file()}


def _mAP_verdict(t, captions) -> str:
    """Which system classifies best, or that none is above the constant predictor (mAP within 0.005
    of it), with the number of distinct captions each system wrote when ``captions`` is given."""
    text = ""
    top = t["cls_mAP"].max()
    if "chance_mAP" in t and top - t["chance_mAP"].iloc[0] < 0.005:
        text = (" No system classifies above the constant predictor: the captions do not follow the audio at "
                "this scale.")
    else:
        best = t.loc[(t["cls_mAP"] - top).abs() < 1e-9, "system"].tolist()
        text = f" Highest mAP here: {', '.join(best)}."
    if captions is not None:
        kinds = [f"{s} {captions[s].nunique()}" for s in t["system"] if s in captions]
        if kinds:
            text += f" Distinct captions over the {len(captions)} scored eval clips: {', '.join(kinds)}."
    return text


def summary(results: dict, profile: str) -> str:
    """The "What this run shows" Markdown of a 06 run (numbers from :func:`read_results`)."""
    from .common import profile_sentence
    lines = ["### What this run shows", "", profile_sentence(profile, "06_sslalm", PROFILE_SCOPES)]
    t = results.get("table1")
    if t is not None and len(t):
        rows = "; ".join(f"{r.system} ({r.trainable / 1e6:.2f}M trainable of {r.total / 1e6:.2f}M): "
                         f"mAP {r.cls_mAP:.3f}, CIDEr {r.caption_CIDEr:.3f}, yes/no {r.yes_no_acc:.3f}"
                         for r in t.itertuples())
        text = ("**Table I** (the paper: ssLALM-Small 50.0 classification / 15.1 captioning, LTU 50.3 / 14.5, "
                "hybrids 50.2 / 14.8 and 49.8 / 15.0). Here, classification by text similarity of the generated "
                f"caption (mAP), caption CIDEr and yes/no accuracy: {rows}.")
        if "chance_mAP" in t:
            text += f" A constant predictor's mAP on the scored eval clips is {t['chance_mAP'].iloc[0]:.3f}."
        text += _mAP_verdict(t, results.get("captions"))
        lines += ["", text]
    g = results.get("generation_timing")
    if g is not None and len(g):
        g = g.set_index("implementation")
        ours, ref = g.iloc[0], g.iloc[1]
        text = (f"**Recurrent generation** ({int(ours.new_tokens)} tokens, hidden {int(ours.hidden_size)}, "
                f"{int(ours.num_layers)} layers, {ours.device}): dasslib's Mamba LM {ours.seconds:.3f} s, "
                f"transformers' generate {ref.seconds:.3f} s "
                f"({ref.seconds / ours.seconds:.1f}x); same tokens: {bool(ours.same_tokens)}.")
        if len(g) > 2:
            gr = g.iloc[2]
            text += (f" Replayed as a CUDA graph: {gr.seconds:.3f} s ({ref.seconds / gr.seconds:.1f}x "
                     f"transformers'); same tokens: {bool(gr.same_tokens)}.")
        lines += ["", text]
    return "\n".join(lines)


def text_encoder_for(folder=None):
    """The text encoder of the scoring: a local sentence-encoder folder, else wordllama's."""
    from dasslib.lalm.evaluate import text_encoder
    return text_encoder(folder)
