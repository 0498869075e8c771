"""Training: the `transformers.Trainer` subclass, the losses, reference log-probs."""
