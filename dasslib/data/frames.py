"""The fbank time base every model here uses: Kaldi fbank frames every 10 ms (AST's front end).

A module of its own with no imports, so models and inference can use it without loading the
audio stack.
"""
FRAME_SHIFT_MS = 10.0
FRAMES_PER_SECOND = 100   # = 1000 / FRAME_SHIFT_MS

__all__ = ["FRAME_SHIFT_MS", "FRAMES_PER_SECOND", "frames_text"]


def frames_text(frames: int) -> str:
    """A length for messages: ``"9000 frames (90.0 s)"``."""
    return f"{frames} frames ({frames / FRAMES_PER_SECOND:.1f} s)"
