"""Bottom-up predictions over an eval split: whole images -> people, no boxes.

`make_people_predict_fn(setup)` builds the run's bottom-up prediction once
(posejax/inference/predict_fn.py: maps and candidates on device, grouping on
the host, the refinement on device; flip test as `eval.flip_test` says);
`predict_people` runs it over `pipeline.whole_image.eval_dataset` and
returns one `Predictions` row per person found, keypoints mapped back to
image pixels, its `instance_score` the grouping's person score (the mean
heatmap value over its keypoints, as the official HigherHRNet test), so
that nothing rescores it. The COCO metric scores the rows against every
annotation of the split (missed people count).
"""

from __future__ import annotations

import jax
import numpy as np

from posejax import distributed
from posejax import geometry
from posejax import sharding
from posejax.codecs import grouping
from posejax.data import pipeline
from posejax.evaluation.predictions import Predictions
from posejax.inference import predict_fn as predict_fn_lib


def make_people_predict_fn(setup):
  config = setup.config
  flip_index = setup.spec.flip_index if config.eval.flip_test else None
  return predict_fn_lib.make_bottom_up_predict_fn(
      setup.model, setup.codec, flip_index, setup.mesh,
      scales=tuple(config.eval.test_scales))


def predict_people(setup, variables, predict_fn=None, keep_images: int = 0):
  """Every person found in the eval split's images, and the first
  `keep_images` images of this process with their people (for pictures)."""
  config = setup.config
  input_size = tuple(config.input.size)
  if predict_fn is None:
    predict_fn = make_people_predict_fn(setup)
  batches = pipeline.whole_image.eval_dataset(
      setup.builder, config, process_index=jax.process_index(),
      process_count=jax.process_count()).as_numpy_iterator()
  local_size = sharding.local_batch_size(config.eval.batch_size)
  blank = lambda: {'image': np.zeros((1, *input_size, 3), np.uint8),
                   'center': np.zeros((1, 2), np.float32),
                   'scale': np.ones((1, 2), np.float32),
                   'image_id': np.zeros((1,), np.int64)}
  rows: dict[str, list] = {k: [] for k in (
      'image_id', 'keypoints', 'keypoints_input', 'scores', 'instance_score',
      'center', 'scale')}
  kept = []
  for batch, real in distributed.lockstep(batches, blank):
    padded, valid = sharding.pad_batch({'image': batch['image']}, local_size)
    people = predict_fn(variables, sharding.global_batch(padded, setup.mesh)['image'])
    if not real:
      continue
    for i in np.flatnonzero(valid):
      found = people[i]
      n = len(found)
      center = np.broadcast_to(batch['center'][i], (n, 2))
      scale = np.broadcast_to(batch['scale'][i], (n, 2))
      rows['image_id'].append(np.full((n,), batch['image_id'][i], np.int64))
      rows['keypoints'].append(geometry.input_to_image(
          found.keypoints, center, scale, input_size).astype(np.float32))
      rows['keypoints_input'].append(found.keypoints)
      rows['scores'].append(found.scores)
      rows['instance_score'].append(found.person_scores)
      rows['center'].append(center)
      rows['scale'].append(scale)
      if len(kept) < keep_images:
        kept.append((batch['image'][i], found))
  local = {k: np.concatenate(v) if v else None for k, v in rows.items()}
  shares = [s for s in distributed.allgather_objects(local)
            if s['image_id'] is not None]
  k = setup.spec.num_keypoints
  if shares:
    c = {key: np.concatenate([s[key] for s in shares]) for key in shares[0]}
  else:
    c = {'image_id': np.zeros((0,), np.int64),
         'keypoints': np.zeros((0, k, 2), np.float32),
         'keypoints_input': np.zeros((0, k, 2), np.float32),
         'scores': np.zeros((0, k), np.float32),
         'instance_score': np.zeros((0,), np.float32),
         'center': np.zeros((0, 2), np.float32), 'scale': np.zeros((0, 2), np.float32)}
  n = len(c['image_id'])
  predictions = Predictions(
      image_id=c['image_id'], keypoints=c['keypoints'],
      keypoints_input=c['keypoints_input'], scores=c['scores'],
      gt_keypoints=np.zeros((n, k, 2), np.float32),
      visibility=np.zeros((n, k), np.int32),
      bbox=grouping.people_boxes(c['keypoints'], c['scores']), center=c['center'],
      scale=c['scale'], box_score=np.ones((n,), np.float32),
      ground_truth_boxes=False, instance_score=c['instance_score'])
  return predictions, kept
