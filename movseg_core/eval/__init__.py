"""Evaluation: metrics (confusion matrix, IoU, ...), offline scoring, reports."""
