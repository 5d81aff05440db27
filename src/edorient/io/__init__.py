"""edorient.io."""
