"""Models: the bundled-model alias, loading models and tokenizers, the dtype a machine computes in."""
