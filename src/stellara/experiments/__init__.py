"""Experiments: variants of a public model, sticky assignment, feedback, comparison and
adaptive allocation."""
