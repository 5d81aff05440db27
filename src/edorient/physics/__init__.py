"""edorient.physics."""
