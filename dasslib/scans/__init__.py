"""Selective scans: ``selective_scan`` (backends torch / triton / mamba_ssm / auto) and layouts."""
from .api import BACKENDS, selective_scan
from .layouts import bidirectional_selective_scan, cross_merge_2d, cross_scan_2d, cross_selective_scan_2d
from .reference import selective_scan_ref

__all__ = ["BACKENDS", "selective_scan", "selective_scan_ref", "bidirectional_selective_scan",
           "cross_scan_2d", "cross_merge_2d", "cross_selective_scan_2d"]
