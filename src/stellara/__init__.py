"""Stellara: a fast AI gateway between applications and LLM providers."""

__version__ = "0.1.0"

__all__ = ["__version__"]
