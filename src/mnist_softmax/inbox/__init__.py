"""New labelled batches: the inbox protocol, checks, the accepted-batch store, demo batches."""
