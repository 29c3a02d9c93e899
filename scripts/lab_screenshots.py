"""Screenshots of committed notebooks as a reader sees them in JupyterLab (headless Chromium).

Usage (from the repository root; needs `make lab`'s JupyterLab and a Chromium, not run by CI):
    python scripts/lab_screenshots.py [NB.ipynb ...] [--out outputs/screenshots] [--jupyter .venv/bin/jupyter]

Starts JupyterLab on 127.0.0.1 (a random token, no browser), opens each notebook (default: notebooks/0*.ipynb)
in headless Chromium with a tall window and saves a PNG per notebook, then stops the server. The page shows the
stored outputs: figures, audio players, the results paragraph (JupyterLab starts a kernel but runs no cell).
See docs/notebook_pages.md.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wait_for(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"JupyterLab did not answer at {url} within {seconds:g} s")
        time.sleep(0.5)


def screenshot(chromium: str, url: str, out: Path, width: int, height: int, budget_ms: int) -> None:
    cmd = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
           f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", url]
    subprocess.run(cmd, check=True, capture_output=True, timeout=budget_ms / 1000 + 120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "screenshots")
    ap.add_argument("--jupyter", default=str(ROOT / ".venv" / "bin" / "jupyter"))
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    ap.add_argument("--port", type=int, default=8891)
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=9000, help="window height in px (JupyterLab draws what is visible)")
    ap.add_argument("--wait-ms", type=int, default=25000, help="Chromium's virtual time budget per page")
    args = ap.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("0*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [args.jupyter, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={args.port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={ROOT}", "--ServerApp.port_retries=0", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, JUPYTER_NO_CONFIG="1"))
    try:
        wait_for(f"{base}/api/status?token={token}")
        for nb in notebooks:
            rel = nb.relative_to(ROOT).as_posix()
            out = args.out / f"{nb.parent.name}__{nb.stem}.png"
            screenshot(args.chromium, f"{base}/lab/tree/{rel}?token={token}&reset", out, args.width, args.height,
                       args.wait_ms)
            print(f"{rel} -> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
