"""Sweeps on a Dask cluster: the fast sweep's blocks run on Dask ``distributed`` workers."""
