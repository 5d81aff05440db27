"""``python -m edorient`` (also what ``torchrun -m edorient train ...`` runs)."""

from edorient.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
