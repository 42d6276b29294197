"""`python -m posejax.eval --config=... --workdir=DIR [--step=N | --best]`.

Evaluates a checkpoint of DIR (the latest by default) with the config's
metric and writes `DIR/eval/step_<N>/` (posejax/evaluation/evaluator.py). Takes the
launch flags of `posejax.main` for several processes (posejax/distributed.py):
each predicts its share of the split, process 0 scores and writes.
"""

import json

from absl import flags
import jax

from posejax import command
from posejax import config_lib
from posejax import distributed
from posejax import experiment
from posejax.evaluation import evaluator


def main(values):
  distributed.initialize_from_flags()
  # The checkpoint first: a wrong --workdir should not wait for the data.
  variables, step = experiment.load_variables(values.workdir, values.step,
                                              values.best)
  setup = experiment.Setup(values.config)
  distributed.check_same_config(config_lib.flatten(values.config))
  variables = jax.device_put(variables, jax.sharding.NamedSharding(
      setup.mesh, jax.sharding.PartitionSpec()))
  metrics = evaluator.evaluate(setup, variables, values.workdir, step)
  print(json.dumps({'step': step, **metrics}, indent=2))


if __name__ == '__main__':
  command.define_run_flags(workdir='Run directory with checkpoints/.', step=True)
  flags.DEFINE_bool('best', False, 'Evaluate the state of the lowest validation '
                    'loss that early stopping kept (train.early_stopping).')
  distributed.define_flags()
  command.run(main, required=['config', 'workdir'])
