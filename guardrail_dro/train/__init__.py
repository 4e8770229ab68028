"""Training: objectives, models, features, the bi-level trainer, baselines, metrics, bench."""
