"""Pooling a (B, C, F, T) feature grid (frequency x time) to one embedding (B, C)."""
POOLINGS = ("mean", "first", "mid", "last", "sum")


def pool_grid(x, mode="mean"):
    """Summarise x (B, C, F, T) into (B, C).

    - ``mean``: average over all F*T cells (the official DASS AdaptiveAvgPool2d(1)).
    - ``sum``: sum over all F*T cells.
    - ``first`` / ``mid`` / ``last``: average over frequency, then take the time step
      0 / T // 2 / T - 1 of the (B, C, T) sequence.
    """
    if mode == "mean":
        return x.mean(dim=(2, 3))
    if mode == "sum":
        return x.sum(dim=(2, 3))
    if mode not in POOLINGS:
        raise ValueError(f"unknown pooling {mode!r}; choose one of {POOLINGS}")
    t = x.shape[-1]
    index = {"first": 0, "mid": t // 2, "last": t - 1}[mode]
    return x[..., index].mean(dim=2)


def check_pooling(mode):
    """Raise ValueError unless ``mode`` is one of :data:`POOLINGS`."""
    if mode not in POOLINGS:
        raise ValueError(f"unknown pooling {mode!r}; choose one of {POOLINGS}")
    return mode


__all__ = ["POOLINGS", "pool_grid", "check_pooling"]
