"""Quality measures: FID/KID on Inception features, classifier-based scores, sliced Wasserstein distance."""
