"""Metric functions: pure functions of predictions and labels."""
