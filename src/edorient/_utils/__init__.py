"""Small shared helpers (no physics, no torch)."""
