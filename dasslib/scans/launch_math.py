"""Integer helpers for kernel launch sizes, evaluated on the host for every call.

``triton.cdiv`` and ``triton.next_power_of_2`` are Triton constexpr functions: called from Python each
unwraps its arguments through Triton's constexpr machinery, about 5 us a call, and one scan forward and
backward sized its launches with 33 of them (a third of the scan's Python time per call, measured with
cProfile on the CPU). These are the same integer functions in plain Python.
"""

__all__ = ["cdiv", "next_power_of_2"]


def cdiv(a: int, b: int) -> int:
    """Ceiling of a / b for positive ints."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n for n >= 1 (0 for n = 0, as Triton's)."""
    return 0 if n <= 0 else 1 << (int(n) - 1).bit_length()
