"""Entry point of the ``edorient`` command.

Only this module configures logging. Bad input (:class:`edorient.errors.EdorientError`, a missing
file, a path that cannot be read or written, a job too large for the memory) ends with a one-line
``edorient: error: ...`` on stderr and exit status 2. Output cut
short by its reader (``edorient reflections | head``) ends quietly with status 141, as a command
killed by SIGPIPE does in a shell. Ctrl-C ends with one line ``edorient CMD: interrupted...`` and
status 130 (128 + SIGINT), also while the subcommand's modules (torch) are still being imported.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys

import edorient
from edorient.cli._base import Subcommand
from edorient.errors import EdorientError


def _subcommands() -> list[type[Subcommand]]:
    import edorient.cli as pkg

    found: dict[str, type[Subcommand]] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_") or info.name == "main":
            continue
        module = importlib.import_module(f"edorient.cli.{info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Subcommand)
                and obj is not Subcommand
                and getattr(obj, "COMMAND", None)
                and obj.__module__ == module.__name__
            ):
                found[obj.COMMAND] = obj
    return [found[k] for k in sorted(found)]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the chosen subcommand's arguments are built.

    Some subcommands list choices that need torch (the model registry); building only the one
    that runs keeps ``edorient simulate`` and ``edorient --help`` fast.
    """
    commands = _subcommands()
    chosen = None
    if argv is not None:
        names = {cls.COMMAND for cls in commands}
        chosen = next((a for a in argv if a in names), None)
    parser = argparse.ArgumentParser(
        prog="edorient",
        description="Zone-axis orientation of one or two crystals from electron diffraction.",
    )
    parser.add_argument("--version", action="version", version=f"edorient {edorient.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--logfile", default=None, help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cls in commands:
        p = sub.add_parser(cls.COMMAND, help=cls.HELP, description=cls.HELP, formatter_class=_DefaultsFormatter)
        if argv is None or cls.COMMAND == chosen:
            cls.add_args(p)
        p.set_defaults(_func=cls.func)
    return parser


class _DefaultsFormatter(argparse.HelpFormatter):
    """States an option's default where its help does not already (a user should not have to
    read the source to learn what a run assumed); nothing for flags, None and required options."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if ("default" in text or action.required or d is None or d is False or d is True
                or d is argparse.SUPPRESS or not action.option_strings):
            return text
        shown = " ".join(map(str, d)) if isinstance(d, (list, tuple)) else d
        return f"{text} (default: {shown})"


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if args.logfile:
        handlers.append(logging.FileHandler(args.logfile))
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)


def _stdout_to_devnull() -> None:
    """Point file descriptor 1 at /dev/null, so that the interpreter's last flush of the
    (broken) stdout at exit does not print a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (replaced, closed): nothing to flush
        pass


def main(argv: list[str] | None = None) -> int:
    """Run ``edorient``; returns the exit status.

    A reader that stops early (``| head``) closes the pipe: the next write to stdout raises
    BrokenPipeError, in any subcommand that prints (or in ``--help``). That is not an error of
    the command: it ends quietly with 141 (128 + SIGPIPE), as shell tools killed by SIGPIPE do.

    Without ``argv`` (the ``edorient`` program itself), Ctrl-C is ignored once the command has
    finished, while the interpreter shuts down (torch's and multiprocessing's exit handlers):
    the interpreter would print a KeyboardInterrupt traceback from an exit handler, or die by
    SIGINT without a word, about work that is done. The exit status is the command's.
    """
    status = _run(argv)
    if argv is None:
        _ignore_interrupts()
    return status


def _ignore_interrupts() -> None:
    for _ in range(3):
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # kept by the interpreter's shutdown, unlike a handler
            return
        except KeyboardInterrupt:  # a Ctrl-C just now: the work is done all the same
            continue
        except (ValueError, OSError):  # not the main thread: leave SIGINT alone
            return


def _run(argv: list[str] | None) -> int:
    try:
        try:
            return _main(argv)
        finally:  # flush here, where a broken pipe can still be caught (also after --help's SystemExit)
            sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        return 141
    except KeyboardInterrupt:  # Ctrl-C before the subcommand ran (importing torch, parsing) or while flushing
        print(f"edorient{_command_in(argv)}: interrupted", file=sys.stderr)
        return 130


def _command_in(argv: list[str] | None) -> str:
    """`` CMD`` for the first word of ``argv`` naming a subcommand module (none imported), else ''."""
    import edorient.cli as pkg

    names = {i.name for i in pkgutil.iter_modules(pkg.__path__) if not i.name.startswith("_") and i.name != "main"}
    return next((f" {a}" for a in (sys.argv[1:] if argv is None else argv) if a in names), "")


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_func", None):
        parser.print_help()
        return 2
    try:
        if args.logfile:
            from edorient._utils.outputs import check_output_file

            check_output_file(args.logfile, "--logfile", create_parent=False)
        _configure_logging(args)
        status = args._func(args)
    except EdorientError as exc:
        print(f"edorient {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        name = exc.filename or str(exc)
        print(f"edorient {args.command}: error: file not found: {name} (check the path)", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise
    except OSError as exc:  # a path the user gave that cannot be read or written
        where = exc.filename if exc.filename is not None else "a file"
        print(f"edorient {args.command}: error: cannot use {where}: {exc.strerror or exc} (check the path, its "
              "folder's permissions and the free space)", file=sys.stderr)
        return 2
    except MemoryError as exc:
        print(f"edorient {args.command}: error: out of memory ({str(exc).splitlines()[0] if str(exc) else 'MemoryError'}); "
              "use smaller sizes, a smaller batch or fewer workers", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edorient {args.command}: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


if __name__ == "__main__":
    raise SystemExit(main())
