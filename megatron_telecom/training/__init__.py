"""Training: config tree and arguments, trainer loop, checkpointing, LR schedule, logging."""
