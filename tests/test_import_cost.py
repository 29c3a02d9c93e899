"""Import cost: ``import dasslib.models`` adds little to ``import torch`` and leaves timm for first use.

Measured with ``python -X importtime`` in a fresh interpreter (cumulative microseconds per module), so a
busy machine slows torch and dasslib alike and the comparison stays fair.
"""
import re
import subprocess
import sys

LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def import_times(code: str) -> dict[str, int]:
    """Cumulative import time (us) of each top-level module ``code`` imports, from ``-X importtime``."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         check=True).stderr
    out = {}
    for line in err.splitlines():
        m = LINE.match(line)
        if m and len(m.group(3)) == 1:          # one space of indent: imported by `code` itself
            out[m.group(4)] = out.get(m.group(4), 0) + int(m.group(2))
    return out


def test_import_time_parser_reads_top_level_modules_only():
    t = import_times("import json, dasslib._lazy")
    assert "json" in t and "dasslib._lazy" in t and "dasslib" not in t and not any(k.startswith("json.") for k in t)


def test_dasslib_models_adds_under_a_second_to_torch_and_imports_no_timm():
    code = "import torch, dasslib.models, sys; assert 'timm' not in sys.modules, 'timm imported eagerly'"
    t = import_times(code)
    ours = sum(v for k, v in t.items() if k.startswith("dasslib"))
    assert t["torch"] > 0 and ours < 1_000_000, (ours, t["torch"])


def test_timm_is_imported_on_first_use():
    code = ("import sys, dasslib.models as m; m.create('ast_tiny', num_classes=3); "
            "assert 'timm' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
