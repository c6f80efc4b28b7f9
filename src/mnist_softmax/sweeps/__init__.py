"""Sweeps: the ``mnist-softmax sweep`` command, the fast in-process sweep and the queued DVC one."""
