"""The ``edorient`` command: one module per subcommand.

Each subcommand module defines a subclass of :class:`edorient.cli._base.Subcommand`; the entry
point in :mod:`edorient.cli.main` discovers them, so adding a subcommand is adding a module.
"""
