"""edorient.data."""
