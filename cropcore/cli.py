"""The `cropcore` command: one entry point, one module per sub-command.

Each sub-command lives beside the code it drives and exposes two functions:
``configure(parser: argparse.ArgumentParser) -> None`` adds its arguments, and
``run(args: argparse.Namespace) -> int`` does the work and returns the exit status.
Modules are imported only when their command runs, so `cropcore demo` never pays for torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: command name -> (module path, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("cropcore.data.download", "fetch official BreizhCrops files for a region and level"),
    "demo": ("cropcore.data.simulate", "write the simulated Brittany dataset in the official layout"),
    "train": ("cropcore.training.command", "train a model with the paper's protocol"),
    "evaluate": ("cropcore.evaluation.command", "score a run or checkpoint on a region"),
    "predict": ("cropcore.evaluation.predict", "write predictions for every parcel of a region"),
    "benchmark": ("cropcore.evaluation.benchmark", "run the paper's Table 2 protocol for all models"),
}


#: Commands that run networks: their process keeps freed memory for reuse (``cropcore.memory``).
COMPUTE_COMMANDS = frozenset({"train", "evaluate", "predict", "benchmark"})


class CommandError(Exception):
    """An expected failure: printed as one line, without a traceback."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only the chosen command's module is imported and configured."""
    parser = argparse.ArgumentParser(prog="cropcore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_path, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_path).configure(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command. Without ``argv`` it is the process's own command line (``cropcore``, ``python -m
    cropcore``, ``torchrun -m cropcore``), and process-wide settings apply (a torchrun worker ends through
    ``distributed.exit_worker``); callers that pass ``argv`` (tests, notebooks, other programs) keep their
    process as it is."""
    own_process = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if arg in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    if own_process and args.command in COMPUTE_COMMANDS:
        from cropcore.memory import keep_freed_memory

        keep_freed_memory()
    code = _run(args)
    # torchrun's WORLD_SIZE, read as ``distributed.from_environment`` reads it, without importing torch here
    if own_process and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from cropcore.training.distributed import exit_worker

        exit_worker(code)
    return code


def _run(args: argparse.Namespace) -> int:
    """The chosen command's exit status; expected failures print one line instead of a traceback."""
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except (CommandError, OSError, ValueError) as error:  # OSError: missing, unreadable, unwritable files
        print(f"cropcore {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cropcore {args.command}: interrupted", file=sys.stderr)
        return 130
