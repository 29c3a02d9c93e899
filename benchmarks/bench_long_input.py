"""Peak memory and seconds per haystack of DASS-Small/Medium at long input lengths (GPU).

    python benchmarks/bench_long_input.py --csv long_input.csv [--lengths 10 60 300 1800 9000]

Random-weight models (527 classes): time and memory do not depend on the weights.
"""
import argparse
import datetime
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from dasslib.experiments.niah import length_scaling  # noqa: E402
from dasslib.models import create  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--models", nargs="+", default=["dass_small", "dass_medium"])
    ap.add_argument("--lengths", nargs="+", type=float, default=[10, 60, 300, 1800, 9000])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for name in args.models:
        model = create(name, num_classes=527).to(device).eval()
        df = length_scaling({name: model}, args.lengths, device, repeats=args.repeats)
        print(df.drop(columns="note").to_string(), flush=True)
        rows.append(df)
        del model
        torch.cuda.empty_cache() if device.type == "cuda" else None
    import pandas as pd

    out = pd.concat(rows, ignore_index=True)
    out["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out["dtype"] = "bf16 autocast" if device.type == "cuda" else "fp32"
    out["batch"] = 1
    out["torch"] = torch.__version__
    out["date"] = datetime.date.today().isoformat()
    out.to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
