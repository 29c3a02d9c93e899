"""Screenshots of committed notebooks as a reader sees them in JupyterLab (headless Chromium).

Usage (from the repository root; needs `make lab`'s JupyterLab and a Chromium, not run by CI):
    python scripts/lab_screenshots.py [NB.ipynb ...] [--out outputs/screenshots] [--jupyter .venv/bin/jupyter]
    python scripts/lab_screenshots.py notebooks/04_niah.ipynb --run-cells     # also needs `pip install playwright`

Starts JupyterLab on 127.0.0.1 (a random token, no browser), opens each notebook (default: notebooks/0*.ipynb)
in headless Chromium with a tall window and saves a PNG per notebook, then stops the server. The page shows the
stored outputs: figures, audio players, the results paragraph (JupyterLab starts a kernel but runs no cell).

--run-cells: runs a copy of each notebook (in OUT/run/<name>/, so its out_dir and data land there and the
committed notebook is untouched) in a live kernel (--kernel-python, default this Python) with JupyterLab's
"Run All", then saves the page and, per cell holding ipywidgets (the dasslib.display.explore explorers, live
only in such a kernel), a crop of that cell (<name>__widgets<i>.png). See docs/notebook_pages.md.
"""
from __future__ import annotations

import argparse
import json
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


def run_and_screenshot(chromium: str, url: str, out: Path, width: int, height: int, timeout_s: float) -> None:
    """Open ``url``, run all cells, then save the page and each widget cell. Playwright drives the browser:
    Chromium's one-shot --screenshot flag cannot run a command in the page or wait for the kernel to finish,
    and JupyterLab has no URL that runs cells. The server exposes the app (``window.jupyterapp``), so "Run All"
    is the JupyterLab command itself, whose promise settles once the last cell has run."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--mute-audio"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url)
            page.wait_for_function("window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel")
            ok = page.evaluate("""async () => {
                const app = window.jupyterapp, panel = app.shell.currentWidget;
                await panel.context.ready; await panel.sessionContext.ready;
                return app.commands.execute('notebook:run-all-cells');
            }""")
            page.wait_for_timeout(3000)                     # the widget views render after the last reply
            page.screenshot(path=out)
            if not ok:
                raise SystemExit(f"a cell failed in {url.split('?')[0]} (see the page: {out})")
            for i, cell in enumerate(page.locator(".jp-CodeCell:has(.jp-OutputArea .widget-inline-hbox)").all()):
                cell.screenshot(path=out.with_name(f"{out.stem}__widgets{i}.png"))
        finally:
            browser.close()


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
    ap.add_argument("--run-cells", action="store_true", help="run a copy of each notebook in a live kernel first")
    ap.add_argument("--kernel-python", default=sys.executable, help="--run-cells: Python with dasslib and ipywidgets")
    ap.add_argument("--run-timeout", type=float, default=900.0,
                    help="--run-cells: seconds to wait for the page and kernel")
    args = ap.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("0*.ipynb"))
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    base = f"http://127.0.0.1:{args.port}"
    root, env = ROOT, dict(os.environ, JUPYTER_NO_CONFIG="1")
    if args.run_cells:
        # The server's root is the scratch folder of the copies. Its kernel "python3" is --kernel-python importing
        # this checkout's dasslib, and the widgets' JupyterLab extension comes from that Python's environment.
        root = args.out / "run"
        spec = root / ".jupyter" / "kernels" / "python3"
        spec.mkdir(parents=True, exist_ok=True)
        spec.joinpath("kernel.json").write_text(json.dumps({
            "argv": [args.kernel_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)", "language": "python"}))
        prefix = subprocess.run([args.kernel_python, "-c", "import sys; print(sys.prefix)"], check=True,
                                capture_output=True, text=True).stdout.strip()
        env.update(JUPYTER_PATH=os.pathsep.join([str(spec.parents[1]), str(Path(prefix) / "share" / "jupyter")]),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    server = subprocess.Popen(
        [args.jupyter, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={args.port}",
         f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True",
         "--allow-root"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for(f"{base}/api/status?token={token}")
        for nb in notebooks:
            out = args.out / f"{nb.parent.name}__{nb.stem}.png"
            if args.run_cells:
                copy = root / nb.stem / nb.name
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(nb, copy)
                url = f"{base}/lab/tree/{copy.relative_to(root).as_posix()}?token={token}&reset"
                run_and_screenshot(args.chromium, url, out, args.width, args.height, args.run_timeout)
            else:
                url = f"{base}/lab/tree/{nb.relative_to(ROOT).as_posix()}?token={token}&reset"
                screenshot(args.chromium, url, out, args.width, args.height, args.wait_ms)
            print(f"{nb.relative_to(ROOT) if nb.is_relative_to(ROOT) else nb} -> "
                  f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
