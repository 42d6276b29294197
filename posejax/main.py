"""`python -m posejax.main --config=configs/<experiment>.py --workdir=DIR`.

Several processes (one per host) start JAX's distributed runtime first:
`--coordinator=HOST:PORT --num_processes=N --process_id=I`, or
`--coordinator=auto` / a cluster launcher (posejax/distributed.py).
"""

from absl import logging
import jax

from posejax import command
from posejax import distributed
from posejax import train


def main(values):
  distributed.initialize_from_flags()
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(),
               jax.process_count(), jax.devices())
  train.train_and_evaluate(values.config, values.workdir)


if __name__ == '__main__':
  command.define_run_flags(workdir='Checkpoints, logs and eval outputs.')
  distributed.define_flags()
  command.run(main, required=['config', 'workdir'])
