"""Bi-temporal change detection: OSCD data, metrics and baselines (the model comes next)."""
