"""The pipeline's batches are the declared schema (posejax/batches.py)."""

import numpy as np
import pytest

from posejax import batches


@pytest.mark.slow
def test_training_and_evaluation_batches_match_the_schema(smoke_config, smoke_builder):
  from posejax import data
  from posejax.data import pipeline
  config = smoke_config('smoke')
  spec = data.keypoint_spec(smoke_builder)
  size = tuple(config.input.size)
  train = next(pipeline.train_dataset(smoke_builder, config).as_numpy_iterator())
  assert batches.schema_errors(train, batches.TRAIN_FIELDS, spec.num_keypoints,
                               size) == []
  assert len(train['image']) == config.train.global_batch_size
  evaluation = next(pipeline.eval_dataset(smoke_builder, config).as_numpy_iterator())
  assert batches.schema_errors(evaluation, batches.EVAL_FIELDS, spec.num_keypoints,
                               size, smoke_builder.EVAL_EXTRAS) == []


def test_the_schema_check_names_what_differs():
  sizes = {'B': 2, 'K': 3, 'H': 8, 'W': 8}
  good = {name: np.zeros([sizes.get(d, d) for d in shape], dtype)
          for name, (dtype, shape) in batches.TRAIN_FIELDS.items()}
  assert batches.schema_errors(good, batches.TRAIN_FIELDS, 3, (8, 8)) == []
  bad = {**good, 'keypoints': good['keypoints'].astype(np.float64),
         'visibility': np.zeros((2, 4), np.int32), 'heatmaps': np.zeros(1)}
  del bad['box_score']
  errors = batches.schema_errors(bad, batches.TRAIN_FIELDS, 3, (8, 8))
  assert errors == [
      "missing fields ['box_score']", "undeclared fields ['heatmaps']",
      'keypoints: dtype float64, declared float32',
      'visibility: shape (2, 4), declared (2, 3)']
