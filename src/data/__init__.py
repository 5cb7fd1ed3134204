"""Datasets, splits, transforms and the data module (no model code here)."""
