"""fetch and preprocess: download and verify the IDX files, split them, fit the scaler."""
