"""Build only mamba-ssm's CUDA selective scan (``selective_scan_cuda``) for the local GPU, as a
benchmark reference for our Triton scan (``benchmarks/bench_scan.py --mamba-ext DIR``).

    python scripts/build_mamba_scan.py --sdist mamba_ssm-2.3.2.post1.tar.gz --out build/mamba_scan

The sdist is the one on PyPI (sha256 104cc47e...d028 for 2.3.2.post1); nothing of it is kept in
this repository. Only ``csrc/selective_scan`` is compiled, with the nvcc flags of mamba-ssm's
setup.py, for the arch of the visible GPU alone (``TORCH_CUDA_ARCH_LIST``, e.g. 9.0 on an
H100), through ``torch.utils.cpp_extension.load`` (ninja, parallel). The whole package (its
Triton layers, causal-conv1d) is not needed. Prints the module path and the build time; the
module is then importable with ``sys.path.insert(0, OUT)``.
"""
import argparse
import os
import sys
import tarfile
import time

SOURCES = ["selective_scan.cpp", "selective_scan_fwd_fp32.cu", "selective_scan_fwd_fp16.cu",
           "selective_scan_fwd_bf16.cu", "selective_scan_bwd_fp32_real.cu",
           "selective_scan_bwd_fp32_complex.cu", "selective_scan_bwd_fp16_real.cu",
           "selective_scan_bwd_fp16_complex.cu", "selective_scan_bwd_bf16_real.cu",
           "selective_scan_bwd_bf16_complex.cu"]
# mamba-ssm 2.3.2 setup.py, CUDA branch (minus its -gencode list: we build the local arch only)
NVCC_FLAGS = ["-O3", "-std=c++17", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
              "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
              "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
              "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
              "-lineinfo", "--threads", "4"]
CXX_FLAGS = ["-O3", "-std=c++17"]


def extract(sdist, dest):
    """Extract ``csrc/selective_scan`` of the sdist into ``dest``; returns its folder."""
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/csrc/selective_scan/" in m.name and m.isfile()]
        if not members:
            raise SystemExit(f"{sdist} has no csrc/selective_scan (not a mamba-ssm sdist?)")
        for m in members:
            m.name = os.path.join("selective_scan", os.path.basename(m.name))
            tar.extract(m, dest, filter="data")
    return os.path.join(dest, "selective_scan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sdist", required=True, help="mamba_ssm-*.tar.gz from PyPI")
    ap.add_argument("--out", required=True, help="build folder (the module lands here)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args()
    import torch
    from torch.utils.cpp_extension import load
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU (it builds for the local arch)")
    major, minor = torch.cuda.get_device_capability()
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")
    os.environ.setdefault("MAX_JOBS", str(args.jobs))
    os.makedirs(args.out, exist_ok=True)
    src = extract(args.sdist, args.out)
    start = time.time()
    mod = load(name="selective_scan_cuda", sources=[os.path.join(src, s) for s in SOURCES],
               extra_cflags=CXX_FLAGS, extra_cuda_cflags=NVCC_FLAGS, extra_include_paths=[src],
               build_directory=args.out, verbose=False)
    print(f"built {mod.__file__} for sm_{major}{minor} in {time.time() - start:.0f} s "
          f"(TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}, MAX_JOBS={os.environ['MAX_JOBS']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
