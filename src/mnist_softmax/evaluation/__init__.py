"""calibrate and evaluate: temperature scaling, calibration metrics, test metrics, figures."""
