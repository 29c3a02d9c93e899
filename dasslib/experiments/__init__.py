"""Experiment runners behind the notebooks: each notebook holds parameters, one call per step and
plots; the steps live here so they are tested and reusable."""
