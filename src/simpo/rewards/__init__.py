"""Scores for generated responses: programmatic checks, reward models, and their weighted sum."""
