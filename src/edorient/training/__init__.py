"""edorient.training."""
