"""Operator commands behind ``mnist-softmax``: retrain, promote, history, compare, ui, sweep..."""
