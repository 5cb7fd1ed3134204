"""Evaluation: segmentation metrics, the evaluation module, reports (tables, confusion matrices)."""
