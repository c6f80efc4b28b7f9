"""NumPy softmax regression on MNIST: a DVC pipeline configured by Hydra, tracked by MLflow."""
