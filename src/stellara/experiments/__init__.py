"""Experiments: variants of a public model, sticky assignment, feedback and comparison."""
