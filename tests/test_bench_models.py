"""benchmarks/bench_models.py on the CPU (--smoke: tiny models of each family): the script runs end
to end, writes one row per (model, mode, batch, path) with measured times, FLOPs and a byte floor
that counts the matmuls / convolutions / einsums / attention inference mode shows it."""
import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_models_smoke(tmp_path):
    out = tmp_path / "speed.csv"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_models", "--smoke",
                          "--device", "cpu", "--check-model", "", "--repeats", "1", "--skip-train",
                          "--models", "ast_base_sdpa,dass_small", "--csv", str(out)],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    keys = {(r["model"], r["mode"], r["batch"], r["path"].split(":")[0]) for r in rows}
    for model in ("ast_base_sdpa", "dass_small"):
        for mode, batch in (("inference", "4"), ("inference", "1"), ("predict", "1")):
            for path in ("eager", "fast"):
                assert (model, mode, batch, path) in keys
    assert all(float(r["clips_per_s"]) > 0 and float(r["gflops_per_clip"]) > 0 for r in rows)
    big = [r for r in rows if r["mode"] == "inference" and r["batch"] == "4"]
    assert all(int(r["floor_bytes_per_clip"]) > 0 and float(r["floor_ms"]) > 0 for r in big)
    # inference rows: the back-to-back time, and its ratio to AST's eager path timed the same way
    inference = [r for r in rows if r["mode"] == "inference"]
    assert all(float(r["ms_back_to_back"]) > 0 for r in inference)
    assert all(float(r["ratio_back_to_back_vs_ast_eager"]) > 0 for r in inference)
    assert all(r["ms_back_to_back"] == "" for r in rows if r["mode"] != "inference")
    ast = [r for r in rows if r["model"] == "ast_base_sdpa"]
    assert all(float(r["ratio_vs_ast_eager"]) > 0 for r in ast if r["path"].startswith("eager"))
    # each row says how far the bf16 fast logits are from the same weights' fp32 eager logits
    assert all("fast bf16 vs eager fp32 rel" in r["note"] for r in rows)


def test_every_label_the_gpu_jobs_time_exists():
    """scripts/gpu_speed_check.sh names bench_models labels; each one is defined, and each label's module
    attributes exist on the model it builds (a renamed default must not leave a job timing nothing)."""
    import re

    from benchmarks.bench_models import ATTRS, FAST_ATTRS, MODELS, SCAN_ATTRS, SMOKE
    from dasslib import fast, models
    from dasslib.scans import triton_backend

    text = (ROOT / "scripts" / "gpu_speed_check.sh").read_text()
    labels = set()
    for line in re.findall(r"models=(\S+)", text):
        labels |= {x for x in line.replace("$models", "").split(",") if x}
    labels |= {x for m in re.findall(r"--models ([\w,]+)", text) for x in m.split(",")}
    assert labels and labels <= set(MODELS), labels - set(MODELS)
    for label, attrs in ATTRS.items():
        name = MODELS[label][0]
        m = models.create(name, num_classes=3, **{**MODELS[label][1], **SMOKE[name.split("_")[0]]})
        for attr in attrs:
            assert any(hasattr(mod, attr) for mod in m.modules()), (label, attr)
    for label, attrs in FAST_ATTRS.items():
        assert label in MODELS and all(hasattr(fast, k) for k in attrs), label
    for label, attrs in SCAN_ATTRS.items():
        assert label in MODELS and all(hasattr(triton_backend, k) for k in attrs), label
