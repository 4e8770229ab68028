"""Training: objectives, models, features, the method table (target sources x classifier
losses), the bi-level trainer, baselines, metrics, bench."""
