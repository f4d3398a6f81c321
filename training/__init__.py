"""cellpoint.training: data, weak labels, methods, the training loop and evaluation (needs the `train` extra).

Modules import torch only where they need it, so the data, label and evaluation tools work without it."""
