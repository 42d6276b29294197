r"""What a bottom-up config's evaluation gives a perfect network.

  python benchmarks/bottom_up_ceiling.py --config=configs/synthetic_openpose.py

Every image of the eval split goes through the run's evaluation path
(posejax/evaluation/predict_people.py: decoding, grouping, the mapping back
to the image, the dataset's metric) with the network's output replaced by
the codec's `ideal_output` of the image's annotated people (their targets
at the first output's resolution, tags or fields included). What it misses
of AP 1 is lost by the input resolution, the decoding and the grouping,
not by training. Prints the metrics as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from posejax import experiment  # noqa: E402
from posejax.codecs import grouping  # noqa: E402
from posejax.data import pipeline  # noqa: E402
from posejax.evaluation import evaluator  # noqa: E402
from posejax.evaluation import predict_people  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'a bottom-up config')


def ideal_predict_fn(setup):
  """A predict function for `predict_people` that reads the same eval
  batches and returns the people of their ideal outputs."""
  config, codec = setup.config, setup.codec
  batches = pipeline.whole_image.eval_dataset(setup.builder, config).as_numpy_iterator()
  decode = jax.jit(lambda out: codec.decode(codec.combine([out])))
  ideal = jax.jit(lambda kp, vis: codec.ideal_output(codec.encode(kp, vis)[0]))

  def predict(variables, images):
    del variables
    batch = next(batches)
    output = ideal(jnp.asarray(batch['keypoints']), jnp.asarray(batch['visibility']))
    candidates = jax.device_get(decode(output))
    size = codec.input_size if getattr(codec, 'project_to_input', False) else codec.output_size
    people = []
    for i in range(len(batch['image'])):
      found = codec.group({k: v[i] for k, v in candidates.items()})
      people.append(dataclasses.replace(
          found, keypoints=np.asarray(codec.to_input(found.keypoints, size), np.float32)))
    empty = grouping.empty_people(setup.spec.num_keypoints)
    return people + [empty] * (len(images) - len(people))
  return predict


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError('--config=configs/<a bottom-up recipe>.py is required.')
  setup = experiment.Setup(config)
  if not setup.codec.bottom_up:
    raise app.UsageError(f'{config.codec.name} is no bottom-up codec.')
  predictions, _ = predict_people.predict_people(setup, None, ideal_predict_fn(setup))
  metrics = evaluator.score(setup, predictions)
  print(json.dumps({'config': config.codec.name, **{k: float(v) for k, v in metrics.items()}}))


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
