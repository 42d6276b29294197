"""`python -m posejax.eval --config=... --workdir=DIR [--step=N | --best]`.

Evaluates a checkpoint of DIR (the latest by default) with the config's
metric and writes `DIR/eval/step_<N>/` (see posejax/evaluate.py). Takes the
launch flags of `posejax.main` for several processes (posejax/distributed.py):
each predicts its share of the split, process 0 scores and writes.
"""

import json

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

import posejax
from posejax import config_lib
from posejax import distributed
from posejax import evaluate
from posejax import experiment


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  values = flags.FLAGS
  try:
    distributed.initialize_from_flags()
    # The checkpoint first: a wrong --workdir should not wait for the data.
    variables, step = experiment.load_variables(values.workdir, values.step,
                                                values.best)
    setup = experiment.Setup(values.config)
    distributed.check_same_config(config_lib.flatten(values.config))
  except (ValueError, FileNotFoundError) as e:
    raise SystemExit(f'posejax: {e}') from None
  variables = jax.device_put(variables, jax.sharding.NamedSharding(
      setup.mesh, jax.sharding.PartitionSpec()))
  metrics = evaluate.evaluate(setup, variables, values.workdir, step)
  print(json.dumps({'step': step, **metrics}, indent=2))


if __name__ == '__main__':
  posejax.restart_with_huge_pages()  # See its docstring: CPU step time.
  # Flags only as a program, so that importing this module defines none.
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
  flags.DEFINE_string('workdir', None, 'Run directory with checkpoints/.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
  flags.DEFINE_bool('best', False, 'Evaluate the state of the lowest validation '
                    'loss that early stopping kept (train.early_stopping).')
  distributed.define_flags()
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=config_lib.parse_flags)
