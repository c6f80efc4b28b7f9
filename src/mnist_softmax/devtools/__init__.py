"""Developer tools: benchmarks, the offline DVC plots template, copying the project."""
