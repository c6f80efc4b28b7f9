"""train: the numerics of softmax regression, the model file, the optimizers, the training loop."""
