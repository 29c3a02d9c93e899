"""Tagging recordings with a trained classifier: clip-level top-k labels, and per-second label
scores, events and a timeline figure for recordings of any length.

``dasslib.tag(paths, model="dass_small", checkpoint=..., labels=..., timeline=True)`` returns
DataFrames (:class:`TagResult`); ``python -m dasslib tag`` is the command line.
"""
from .api import TagResult, tag

__all__ = ["TagResult", "tag"]
