"""log: everything that talks to MLflow (the only subpackage that imports mlflow)."""
