"""Drop stderr outputs that only carry an install-path warning from executed notebooks.

Usage: python scripts/strip_paths.py NB.ipynb [...]
GPU runs install extra wheels into a scratch prefix; tqdm then warns with that path. The warning says nothing
about the results and the path is specific to the machine that ran it, so committed notebooks leave it out.
"""
import json
import re
import sys

PATH = re.compile(r"(/tmp|/root|/home|/work)/\S*")


def strip(path: str) -> int:
    with open(path) as f:
        nb = json.load(f)
    dropped = 0
    for cell in nb["cells"]:
        outs = cell.get("outputs", [])
        keep = []
        for o in outs:
            text = "".join(o.get("text", "")) if o.get("output_type") == "stream" else ""
            if o.get("name") == "stderr" and PATH.search(text):
                dropped += 1
                continue
            keep.append(o)
        if outs:
            cell["outputs"] = keep
    raw = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if PATH.search(raw):
        raise SystemExit(f"{path}: a machine path remains outside stderr warnings: {PATH.search(raw).group(0)}")
    with open(path, "w") as f:
        f.write(raw)
    return dropped


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(p, "dropped", strip(p), "stderr outputs")
