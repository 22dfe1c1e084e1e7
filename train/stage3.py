"""Train a refiner (role "refiner"): a stage at the target resolution that polishes the last SR
stage's output, conditioned on a softened copy of its input and trained on the low-noise end of
the schedule."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main("refiner", __doc__))
