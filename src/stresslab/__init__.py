"""stresslab: stress-test image classifiers and write one report on how and why they fail."""

__version__ = "0.1.0"
