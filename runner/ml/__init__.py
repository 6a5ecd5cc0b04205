"""The machine learning, the one place torch is imported: model, LoRA, batching,
checkpoints, the training loop, inference, metrics, calibration and the RQ3 precision
levels (quantize).  Importing the package
itself loads nothing; its modules import torch."""
