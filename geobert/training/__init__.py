"""Training recipes (masked image modelling now; change and land cover heads later)."""
