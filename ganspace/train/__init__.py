"""Training: datasets, synthetic notes, the discriminator, the trainer, evaluation."""
