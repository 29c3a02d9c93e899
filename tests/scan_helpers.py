"""Shared pieces of the Triton scan tests (no side effects on import)."""


def rel(a, b):
    """Relative L2 distance of a from the reference b, in float64."""
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


# the sequential forward in one chunk, one row per thread, before the rows backward with one row per program
SEQ = dict(fwd="seq", seq_warps=1, n_chunks=1, prefetch=1, bwd="rows", bwd_rows=1, bwd_warps=1)
