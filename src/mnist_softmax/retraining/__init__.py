"""Scheduled retraining: the job, its champion rule, new batches, lock, signals and history."""
