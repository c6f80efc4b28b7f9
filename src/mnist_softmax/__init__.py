"""NumPy softmax regression on MNIST: a DVC pipeline configured by Hydra, tracked by MLflow."""

__version__ = "0.1.0"
