"""`python -m posejax.main --config=configs/<experiment>.py --workdir=DIR`.

Several processes (one per host) start JAX's distributed runtime first:
`--coordinator=HOST:PORT --num_processes=N --process_id=I`, or
`--coordinator=auto` / a cluster launcher (posejax/distributed.py).
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

import posejax
from posejax import config_lib
from posejax import distributed
from posejax import experiment
from posejax import train

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, logs and eval outputs.')
distributed.define_flags()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    distributed.initialize_from_flags()
  except ValueError as e:
    raise SystemExit(f'posejax: {e}') from None
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(),
               jax.process_count(), jax.devices())
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except experiment.SetupError as e:
    raise SystemExit(f'posejax: {e}') from None


if __name__ == '__main__':
  posejax.restart_with_huge_pages()  # See its docstring: CPU step time.
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=config_lib.parse_flags)
