"""edorient.models."""
