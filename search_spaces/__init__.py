"""Search spaces, one module per task: an Optuna define-by-run space plus the study's presets."""
