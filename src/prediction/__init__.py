"""Prediction on any images: sizing and sliding windows, the predictor, decoding, output files."""
