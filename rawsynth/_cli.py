"""What every command line of the project (``rawsynth``, ``rddm``, ``python -m benchmarks``) does around its
subcommands: help when none is given, one-line errors with exit status 2. See ``docs/architecture.md``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .errors import RawsynthError


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None, hints: dict[str, str] | None = None,
            traceback_env: str | None = None, name: str | None = None) -> int:
    """Parse ``argv``, run the chosen subcommand (``args.func(args)``) and return the exit status.

    Args:
        parser: the program's parser; subcommands set ``func`` and the ``command`` destination.
        argv: arguments (``None``: ``sys.argv[1:]``).
        hints: per subcommand, a sentence printed after an I/O error or an interruption (e.g. how to resume).
        traceback_env: if given, unexpected exceptions become one line too (exit 2) unless this environment
            variable is set, which re-raises them with their traceback.
        name: how messages name the program (default ``parser.prog``).

    Typed errors (:class:`~rawsynth.errors.RawsynthError`, which every package's errors derive from) and
    ``OSError`` (e.g. a full disk) print ``PROG COMMAND: error: ...`` and return 2; Ctrl-C returns 130, SIGTERM
    (when the command turns it into :class:`rawsynth.signals.Terminated`) 143.
    """
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    prefix = f"{name or parser.prog} {args.command}"
    hint = (hints or {}).get(args.command)
    try:
        return args.func(args)
    except RawsynthError as e:
        print(f"{prefix}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"{prefix}: error: {e.strerror or e}{where}", file=sys.stderr)
        if hint:
            print(f"{prefix}: {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", None)  # rawsynth.signals.Terminated: SIGTERM
        what = "terminated (SIGTERM)" if signum else "interrupted"
        print(f"{prefix}: {what}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 128 + int(signum) if signum else 130
    except Exception as e:
        if traceback_env is None or os.environ.get(traceback_env):
            raise
        print(f"{prefix}: unexpected error: {type(e).__name__}: {e} (this is a bug or a failure inside a "
              f"third-party package; rerun with {traceback_env}=1 for the traceback and report it)", file=sys.stderr)
        return 2
