import math

import triton

from dasslib.scans.launch_math import cdiv, next_power_of_2


def test_launch_math_matches_triton_helpers():
    for n in range(0, 3000, 7):
        assert next_power_of_2(n) == triton.next_power_of_2(n)
        for b in (1, 3, 16, 256, 1024):
            assert cdiv(n, b) == triton.cdiv(n, b) == math.ceil(n / b)
    assert next_power_of_2(2 ** 40 + 1) == 2 ** 41
