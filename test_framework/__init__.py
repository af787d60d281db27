"""test_framework: run a pytest suite as fast as the machine allows, without lying about it."""

__version__ = "0.1.0"
