"""Kernels and process settings for speed and memory: response log-probs, packed attention, the allocator."""
