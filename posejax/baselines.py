"""Reference points for a dataset: how well does a trivial predictor score?

`python -m posejax.baselines --config=configs/synthetic.py` scores the
training-set mean pose, placed inside each ground-truth box of the eval split,
with the same metrics as `posejax.eval`. A task on which this scores well is
too easy to say anything about a network.
"""

from __future__ import annotations

import json

import numpy as np

from posejax import command
from posejax import data
from posejax import geometry
from posejax.data import pipeline
from posejax.evaluation import coco
from posejax.evaluation import ground_truth
from posejax.evaluation import pck


def _crops(builder, config, split):
  """Every scored instance of `split`, unaugmented: keypoints in input px."""
  ds = pipeline.eval_dataset(builder, config, split)
  fields = ('keypoints', 'visibility', 'image_id', 'center', 'scale', 'bbox')
  rows = {k: [] for k in fields}
  for batch in ds.as_numpy_iterator():
    for k in fields:
      rows[k].append(batch[k])
  return {k: np.concatenate(v) for k, v in rows.items()}


def mean_pose_metrics(config, builder) -> dict:
  """COCO AP/AR and box PCK@0.1 of the train-split mean pose on the eval split."""
  spec = data.keypoint_spec(builder)
  train = _crops(builder, config, config.dataset.train_split)
  labelled = train['visibility'] > 0
  mean_pose = (np.sum(train['keypoints'] * labelled[..., None], 0)
               / np.maximum(labelled.sum(0), 1)[:, None])
  val = _crops(builder, config, config.dataset.eval_split)
  n = len(val['image_id'])
  size, crop = tuple(config.input.size), config.input.crop
  pred = geometry.input_to_image(np.broadcast_to(mean_pose, (n, *mean_pose.shape)),
                                 val['center'], val['scale'], size, crop)
  gt = geometry.input_to_image(val['keypoints'], val['center'], val['scale'], size,
                               crop)
  annotations = ground_truth.coco_ground_truth(builder, config.dataset.eval_split)
  results = coco.keypoint_results(val['image_id'], pred, np.ones(pred.shape[:2]),
                                  np.ones(n))
  metrics = coco.coco_keypoint_metrics(annotations, results, spec)
  metrics['PCK@0.1'] = float(pck.box_pck(pred, gt, val['visibility'], val['bbox'])['mean'])
  return {k: float(v) for k, v in metrics.items()}


def main(values):
  config = values.config
  builder = data.get_builder(config.dataset)
  print(json.dumps({'baseline': 'train-set mean pose in ground-truth boxes',
                    **mean_pose_metrics(config, builder)}, indent=2))


if __name__ == '__main__':
  command.define_run_flags()
  command.run(main, required=['config'], huge_pages=False)
