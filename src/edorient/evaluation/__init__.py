"""edorient.evaluation."""
