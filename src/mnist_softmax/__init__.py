"""NumPy softmax regression on MNIST, run as a DVC pipeline configured by Hydra and tracked by MLflow."""

__version__ = "0.1.0"
