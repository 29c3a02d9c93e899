"""ssLALM (dasslib.lalm): projector, stages, checkpoints, padding, recurrent generation, LoRA
counts on meta-device 2.8B shapes, parity of the Mamba LM with transformers."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("tokenizers")

from dasslib.lalm import (  # noqa: E402
    SSLALM,
    AudioEncoder,
    AudioProjector,
    MambaLM,
    MambaLMConfig,
    apply_lora,
    count_lora_parameters,
    tiny_llama,
    tiny_mamba,
    train_bpe_tokenizer,
)
from dasslib.models import count_parameters, create  # noqa: E402

TEXTS = ["### Instruction:\nWhat sound events can be heard?\n\n### Response:\nPiano, snare drum.",
         "### Instruction:\nIs there a violin?\n\n### Response:\nNo.", "The sound of a flute and a bass drum."]
QUESTIONS = ["What sound events can be heard?", "Is there a violin in this recording, yes or no?"]


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer(TEXTS * 2, vocab_size=320)


def tiny_encoder():
    return AudioEncoder(create("dass_small", num_classes=0, depths=[1, 1, 1, 1], dims=[8, 16, 32, 64]))


def tiny_model(tok, family="mamba", seed=0):
    torch.manual_seed(seed)
    lm = tiny_mamba(len(tok), 32, 2, scan_backend="torch") if family == "mamba" else \
        tiny_llama(len(tok), 32, 2, num_heads=2)
    return SSLALM(tiny_encoder(), apply_lora(lm), tok).eval()


def test_projector_gives_32_tokens_and_the_paper_trainable_totals():
    with torch.device("meta"):
        enc = {n: AudioEncoder(create(f"dass_{n}", num_classes=0)) for n in ("small", "medium")}
        proj = AudioProjector(768, 2560)
        grid = enc["small"](torch.empty(2, 1024, 128))
        assert tuple(grid.shape) == (2, 768, 4, 32)
        assert tuple(proj(grid).shape) == (2, 32, 2560)
        lm = MambaLM(MambaLMConfig(vocab_size=50280, hidden_size=2560, num_hidden_layers=64))
        apply_lora(lm)
    n_proj = count_parameters(proj)
    assert n_proj == 768 * 768 * 9 + 768 + 768 * 2560 + 2560
    lora = count_lora_parameters(lm)
    assert lora == 64 * 8 * (2560 + 2 * 5120) == 6_553_600          # the paper's 6.55M
    assert count_parameters(lm, trainable_only=True) == lora
    small = count_parameters(enc["small"]) + n_proj + lora
    medium = count_parameters(enc["medium"]) + n_proj + lora
    assert abs(small / 1e6 - 43) < 0.5 and abs(medium / 1e6 - 62) < 0.5   # paper: ~43M / ~62M
    with pytest.raises(ValueError, match="grid must be"):
        proj(torch.empty(1, 64, 4, 32, device="meta"))


def test_llama_lora_targets_q_and_v_only(tok):
    lm = apply_lora(tiny_llama(len(tok), 32, 2, num_heads=2))
    names = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in lm.named_parameters() if "lora_" in n}
    assert names == {"q_proj", "v_proj"}
    assert count_lora_parameters(lm) == 2 * 2 * 8 * (32 + 32)


def test_stage_freezing(tok):
    m = tiny_model(tok)
    groups = {"encoder": m.encoder, "projector": m.projector}
    for k, trained in [(1, {"projector"}), (2, {"encoder", "projector", "lora"}),
                       (3, {"encoder", "projector", "lora"}), (4, {"encoder", "projector", "lora"})]:
        m.set_stage(k)
        for g, mod in groups.items():
            assert all(p.requires_grad == (g in trained) for p in mod.parameters()), (k, g)
        for n, p in m.lm.named_parameters():
            assert p.requires_grad == ("lora_" in n and "lora" in trained), (k, n)
    with pytest.raises(ValueError, match="stage must be"):
        m.set_stage(5)
    bare = SSLALM(tiny_encoder(), tiny_mamba(len(tok), 32, 1, scan_backend="torch"), tok)
    with pytest.raises(ValueError, match="apply_lora"):
        bare.set_stage(2)


def test_loss_only_on_text_tokens_and_trainable_checkpoint(tok, tmp_path):
    m = tiny_model(tok)
    fb = torch.randn(2, 256, 128)
    out = m(fb, QUESTIONS, ["Piano.", "No."])
    ids, _ = m.encode_text(QUESTIONS, ["Piano.", "No."])
    labels = out["labels"]
    assert (labels[:, :32] == -100).all()                              # audio positions: no loss
    assert [(row != -100).sum().item() for row in labels] == [len(x) - 1 for x in ids]
    out["loss"].backward()
    m.set_stage(2)
    path = m.save_trainable(tmp_path / "ck.pt")
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert not any(k.startswith("lm.") and "lora_" not in k for k in saved)
    assert any("lora_" in k for k in saved) and any(k.startswith("projector.") for k in saved)
    other = tiny_model(tok, seed=1)
    other.load_trainable(path)
    for k, v in saved.items():
        torch.testing.assert_close(other.state_dict()[k], v)
    with pytest.raises(ValueError, match="batch of"):
        m(fb, QUESTIONS[:1], ["x"])


@pytest.mark.parametrize("family", ["mamba", "llama"])
def test_left_padded_batch_equals_unpadded(tok, family):
    m = tiny_model(tok, family)
    fb = torch.randn(2, 256, 128)
    both = m.prompt_logits(fb, QUESTIONS)
    alone = torch.cat([m.prompt_logits(fb[i:i + 1], [q]) for i, q in enumerate(QUESTIONS)])
    torch.testing.assert_close(both, alone, rtol=1e-5, atol=1e-5)
    assert m.generate(fb, QUESTIONS, max_new_tokens=6) == \
        [m.generate(fb[i:i + 1], [q], max_new_tokens=6)[0] for i, q in enumerate(QUESTIONS)]


@pytest.mark.parametrize("family", ["mamba", "llama"])
def test_recurrent_steps_equal_full_rescan(tok, family):
    torch.manual_seed(0)
    lm = tiny_mamba(len(tok), 32, 2, scan_backend="torch") if family == "mamba" else \
        tiny_llama(len(tok), 32, 2, num_heads=2)
    lm.eval()
    ids = torch.randint(0, len(tok), (2, 40))
    with torch.no_grad():
        full = lm(input_ids=ids)
        logits, state = lm(input_ids=ids[:, :7], return_state=True)
        steps = [logits[:, -1]]
        for t in range(7, 40):
            lg, state = lm.step(ids[:, t], state)
            steps.append(lg)
    torch.testing.assert_close(torch.stack(steps[:-1], 1), full[:, 6:-1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(steps[-1], full[:, -1], rtol=1e-5, atol=1e-5)


def test_graphed_step_buffers_equal_plain_steps(tok):
    from dasslib.lalm.graphs import GraphedStep
    torch.manual_seed(0)
    lm = tiny_mamba(len(tok), 32, 2, scan_backend="torch").eval()
    ids = torch.randint(0, len(tok), (2, 20))
    with torch.no_grad():
        _, state = lm(input_ids=ids[:, :8], return_state=True)
        stepper = GraphedStep(lm, state, ids[:, 8])        # on the CPU: the same buffers, stepped eagerly
        for t in range(8, 20):
            want, state = lm.step(ids[:, t], state)
            torch.testing.assert_close(stepper(ids[:, t]), want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="one token per row"):
        GraphedStep(lm, state, ids)
    with pytest.raises(ValueError, match="built for ids of shape"):
        stepper(ids[:1, 0])
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        GraphedStep(lm, state, ids[:, 0], use_graph=True)
    m = tiny_model(tok, "mamba")
    fb = torch.randn(2, 256, 128)
    assert m.generate(fb, QUESTIONS, max_new_tokens=6, graph=True) == \
        m.generate(fb, QUESTIONS, max_new_tokens=6, graph=False)
    with pytest.raises(ValueError, match="needs a Mamba LM"):
        tiny_model(tok, "llama").generate(fb, QUESTIONS, max_new_tokens=2, graph=True)


class _OldCacheNames(torch.nn.Module):
    """A transformers model as releases before 5.x call its KV cache: ``past_key_values``."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, inputs_embeds=None, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=False):
        from types import SimpleNamespace
        out = self.inner(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                         position_ids=position_ids, cache=past_key_values, use_cache=use_cache)
        return SimpleNamespace(logits=out.logits, past_key_values=out.cache)


def test_hf_lm_takes_the_pre_5_cache_names(tok):
    from dasslib.lalm import HFCausalLM
    torch.manual_seed(0)
    new = tiny_llama(len(tok), 32, 2, num_heads=2).eval()
    old = HFCausalLM(_OldCacheNames(new.model)).eval()
    assert old._cache_arg == "past_key_values" and new._cache_arg == "cache"
    ids = torch.randint(0, len(tok), (2, 12))
    with torch.no_grad():
        results = []
        for lm in (new, old):
            _, state = lm(input_ids=ids[:, :6], return_state=True)
            steps = []
            for t in range(6, 12):
                lg, state = lm.step(ids[:, t], state)
                steps.append(lg)
            results.append(torch.stack(steps, 1))
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)
    torch.testing.assert_close(results[0], new(input_ids=ids)[:, 6:], rtol=1e-5, atol=1e-5)


def test_mamba_lm_matches_transformers(tmp_path):
    from transformers import MambaConfig, MambaForCausalLM
    torch.manual_seed(0)
    cfg = MambaConfig(vocab_size=101, hidden_size=32, state_size=8, num_hidden_layers=2,
                      time_step_rank=4)
    ref = MambaForCausalLM(cfg).eval()
    with torch.no_grad():                                  # every weight random, not its init value
        for n, p in ref.named_parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref.save_pretrained(tmp_path / "mamba-tiny-hf")
    ours = MambaLM.from_pretrained(tmp_path / "mamba-tiny-hf", scan_backend="torch").eval()
    ids = torch.randint(0, 101, (3, 45))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    with torch.no_grad():
        for kw in ({}, {"attention_mask": mask}):
            a = ref(ids, **kw).logits
            b = ours(ids, **kw)
            assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    # round trip of our own writer, and a bad folder
    ours.save_pretrained(tmp_path / "again")
    again = MambaLM.from_pretrained(tmp_path / "again", scan_backend="torch")
    torch.testing.assert_close(again(ids), ours(ids))
    with pytest.raises(FileNotFoundError, match="config.json"):
        MambaLM.from_pretrained(tmp_path)


def test_stage_training_and_lm_pretraining_run(tok):
    from dasslib.lalm.data import QAItem
    from dasslib.lalm.train import pretrain_lm, train_stage
    m = tiny_model(tok)
    fb = torch.randn(3, 256, 128)
    items = [QAItem(i, q, a, "classification") for i, (q, a) in
             enumerate(zip(QUESTIONS + ["Count?"], ["Piano.", "No.", "Two."]))]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    log = train_stage(m, items, lambda i: fb[i], 1, epochs=2, batch_size=2, warmup_steps=1)
    assert [r["step"] for r in log] == [0, 1, 2, 3] and all(r["loss"] > 0 for r in log)
    after = m.state_dict()
    changed = {k.split(".")[0] for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"projector"}                                      # stage 1: the projector only
    lm_log = pretrain_lm(tiny_mamba(len(tok), 16, 1, scan_backend="torch"), tok, TEXTS, epochs=2, batch_size=2)
    assert len(lm_log) == 4
    with pytest.raises(ValueError, match="no training items"):
        train_stage(m, [], lambda i: fb[i], 2)


def test_local_folders_tokenizer_llama_and_sentence_encoder(tok, tmp_path):
    from transformers import BertConfig, BertModel

    from dasslib.lalm import HFCausalLM, load_lm, load_tokenizer
    from dasslib.lalm.evaluate import LocalSentenceEncoder, label_scores
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert again(TEXTS[0]).input_ids == tok(TEXTS[0]).input_ids and again.pad_token_id == tok.pad_token_id
    torch.manual_seed(0)
    llama = tiny_llama(len(tok), 32, 1, num_heads=2).eval()
    llama.model.save_pretrained(tmp_path / "llama")
    loaded = load_lm(tmp_path / "llama")
    ids = torch.randint(0, len(tok), (1, 6))
    assert isinstance(loaded, HFCausalLM)
    torch.testing.assert_close(loaded(input_ids=ids), llama(input_ids=ids))
    bert = BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32))
    bert.save_pretrained(tmp_path / "enc")
    tok.save_pretrained(tmp_path / "enc")
    s = label_scores(["a piano", "snare drum"], ["piano", "violin"], LocalSentenceEncoder(tmp_path / "enc"))
    assert s.shape == (2, 2) and (abs(s) <= 1 + 1e-5).all()
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "missing")


def test_bin_checkpoint_folder_and_sampling(tok, tmp_path):
    import json
    torch.manual_seed(0)
    lm = tiny_mamba(len(tok), 16, 1, scan_backend="torch").eval()
    (tmp_path / "bin").mkdir()
    sd = {k: v for k, v in lm.state_dict().items() if k != "lm_head.weight"}
    torch.save(sd, tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_text(json.dumps(lm.config.to_dict()))
    loaded = MambaLM.from_pretrained(tmp_path / "bin", scan_backend="torch")
    ids = torch.randint(0, len(tok), (1, 5))
    torch.testing.assert_close(loaded(input_ids=ids), lm(input_ids=ids))
    m = tiny_model(tok)
    fb = torch.randn(1, 256, 128)
    kw = dict(max_new_tokens=5, do_sample=True, temperature=0.1, top_k=500, top_p=0.95)
    a = m.generate(fb, QUESTIONS[:1], generator=torch.Generator().manual_seed(3), **kw)
    b = m.generate(fb, QUESTIONS[:1], generator=torch.Generator().manual_seed(3), **kw)
    assert a == b and isinstance(a[0], str)
