"""What every command line shares: its flags, and the one-line error.

Library code raises; a command line defines its flags only when it runs as
a program (absl flags are process-global, and notebooks and tests import the
modules), then `run(main)` parses them and turns the errors that mean "fix
the input" into one `posejax: ...` line on stderr with exit status 1:

  if __name__ == '__main__':
    command.define_run_flags()
    flags.DEFINE_string('input', None, '...')
    command.run(main, required=['config', 'workdir', 'input'])

`main(values)` takes the parsed `flags.FLAGS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

import posejax
from posejax import config_lib

# What library code raises for a wrong path, value or file: one line each.
# Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, FloatingPointError)


def define_run_flags(config: bool = True, workdir: str | None = None,
                     step: bool = False) -> None:
  """--config (an experiment file), --workdir (its help given) and --step."""
  if config:
    config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
  if workdir:
    flags.DEFINE_string('workdir', None, workdir)
  if step:
    flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')


def run(main: Callable, required: Sequence[str] = (), prefix: str = 'posejax',
        huge_pages: bool = True) -> None:
  """Parses the flags and runs `main(flags.FLAGS)`; user errors in one line."""
  if huge_pages:
    posejax.restart_with_huge_pages()  # See its docstring: CPU step time.
  flags.mark_flags_as_required(list(required))

  def guarded(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    try:
      main(flags.FLAGS)
    except USER_ERRORS as e:
      raise SystemExit(f'{prefix}: {e}') from None

  app.run(guarded, flags_parser=config_lib.parse_flags)
