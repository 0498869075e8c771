"""Sampling responses from a policy: prompt rendering, exact top-p sampling, the backends."""
