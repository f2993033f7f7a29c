"""scenetune: hyperparameter search for image-classification studies on Ray Tune."""

__version__ = "0.1.0"
