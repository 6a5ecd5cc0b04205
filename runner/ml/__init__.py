"""The machine learning, the one place torch is imported: model, LoRA, batching,
checkpoints, the training loop, inference, metrics and calibration.  Importing the package
itself loads nothing; its modules import torch."""
