"""Quality measures: FID/KID on Inception features, classifier scores, sliced Wasserstein."""
