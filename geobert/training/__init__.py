"""Training: masked-image-modelling pretraining and what the change and land-cover fine-tuning
share (the encoder start, optimiser, schedule, weight averaging, losses, augmentation)."""
