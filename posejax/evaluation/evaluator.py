"""Evaluation of a run: variables -> predictions -> the metric, and the files.

`Evaluator(setup)(variables, workdir, step)` predicts every scored instance
of the eval split (posejax/evaluation/predict_split.py: in its annotated
boxes, or in person detections with `config.eval.boxes`), post-processes them
as the official top-down code does (posejax/evaluation/postprocess.py),
scores them with the run's metric (`evaluation.METRICS`; see
posejax/evaluation/__init__.py for what each writes) and writes
`<workdir>/eval/step_<N>/`: results.json (COCO results format), metrics.json,
predictions.png and stages.png. The training loop keeps one Evaluator per
run; `python -m posejax.eval` is the command line for a checkpoint.

A value that is undefined for the split (a category or subset with nothing to
score) is left out rather than written as nan.
"""

from __future__ import annotations

import json
import os

from absl import logging
import cv2
import jax
import numpy as np

from posejax import distributed
from posejax import evaluation
from posejax import visualize
from posejax.evaluation import ground_truth
from posejax.evaluation import postprocess
from posejax.evaluation import predict_people
from posejax.evaluation import predict_split
from posejax.evaluation.predictions import Predictions


# Instances shown with every stage's heatmaps in stages.png.
STAGE_PANELS = 4


def score(setup, predictions: Predictions) -> dict[str, float]:
  """The run's metric of post-processed predictions; nan values left out."""
  split = setup.config.dataset.eval_split
  metrics = evaluation.METRICS[setup.metric](
      predictions, setup.spec,
      lambda: ground_truth.coco_ground_truth(setup.builder, split))
  return {k: float(v) for k, v in metrics.items() if not np.isnan(v)}


class Evaluator:
  """Scores variables on a run's eval split and writes the files.

  Built once per run: its jitted prediction then traces and compiles once,
  however many periodic evaluations call it.
  """

  def __init__(self, setup):
    self.setup = setup
    self.num_images = setup.config.eval.num_images_to_draw
    if setup.codec.bottom_up:
      self.predict_fn = predict_people.make_people_predict_fn(setup)
    else:
      self.predict_fn = predict_split.make_split_predict_fn(
          setup, pictures=self.num_images > 0)

  def __call__(self, variables, workdir: str, step: int, writer=None) -> dict:
    """Scores `variables`; writes `<workdir>/eval/step_<step>/`; returns metrics.

    With a clu `writer`, the two pictures (the prediction grid and the stage
    panels of the first crops) also go to TensorBoard as `eval/predictions`
    and `eval/stages`.
    """
    if self.setup.codec.bottom_up:
      predictions, images = predict_people.predict_people(
          self.setup, variables, self.predict_fn, self.num_images)
      return _score_everywhere(self.setup, predictions, images, None, workdir,
                               step, writer)
    predictions, crops, stage_maps = predict_split.predict_split(
        self.setup, variables, self.predict_fn, self.num_images)
    return _score_everywhere(self.setup, predictions, crops, stage_maps,
                             workdir, step, writer)


def evaluate(setup, variables, workdir: str, step: int, writer=None) -> dict:
  """One evaluation (`Evaluator(setup)(...)`); a run that evaluates several
  times keeps one `Evaluator`."""
  return Evaluator(setup)(variables, workdir, step, writer)


def _score_everywhere(setup, predictions, crops, stage_maps, workdir, step,
                      writer) -> dict:
  # Every process holds every prediction; process 0 scores them and writes
  # the files, and the others take its metrics (or its error).
  outcome = None
  if jax.process_index() == 0:
    try:
      outcome = _score_and_write(setup, predictions, crops, stage_maps, workdir,
                                 step, writer)
    except Exception as e:  # pylint: disable=broad-except
      if jax.process_count() == 1:
        raise
      outcome = e
  outcome = distributed.from_process_zero(outcome)
  if isinstance(outcome, Exception):
    raise outcome
  return outcome


def _score_and_write(setup, predictions, crops, stage_maps, workdir, step,
                     writer) -> dict:
  config = setup.config
  # Bottom-up people come with the grouping's scores and no boxes: nothing
  # to rescore or suppress.
  kept = (predictions if setup.codec.bottom_up else postprocess.postprocess(
      predictions, setup.spec, config.eval.oks_nms_threshold))
  metrics = score(setup, kept)
  out_dir = os.path.join(workdir, 'eval', f'step_{step}')
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'results.json'), 'w') as f:
    json.dump(kept.coco_results, f)
  with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
    json.dump({'step': step, 'split': config.dataset.eval_split,
               'num_instances': len(kept), **metrics}, f, indent=2)
  if setup.codec.bottom_up and len(crops):
    pictures = {'predictions': _people_grid(crops, setup.spec)}
  elif len(crops):
    pictures = {
        'predictions': _prediction_grid(crops, predictions, setup.spec),
        'stages': visualize.image_grid(
            [visualize.stage_panel(crop, maps, predictions.keypoints_input[i],
                                   predictions.scores[i], setup.spec)
             for i, (crop, maps) in enumerate(zip(crops[:STAGE_PANELS],
                                                  stage_maps))], columns=1),
    }
  if len(crops):
    for name, picture in pictures.items():
      visualize.save_png(os.path.join(out_dir, f'{name}.png'), picture)
    if writer is not None:
      writer.write_images(step, {f'eval/{k}': v[None] for k, v in pictures.items()})
  logging.info('Eval at step %d: %s', step,
               ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
  return metrics


def _people_grid(images_and_people, spec, threshold: float = 0.2):
  """Grid of whole images with every person found drawn on them."""
  drawn = []
  for image, people in images_and_people:
    image = np.ascontiguousarray(image)
    for keypoints, scores in zip(people.keypoints, people.scores):
      image = visualize.draw_pose(image, keypoints, scores, spec,
                                  threshold=threshold)
    drawn.append(image)
  return visualize.image_grid(drawn, columns=min(4, len(drawn)))


def _prediction_grid(crops, predictions: Predictions, spec, min_height=192):
  """Grid of the first crops with their predicted skeletons, enlarged."""
  factor = max(1, -(-min_height // crops.shape[1]))
  drawn = []
  for i, crop in enumerate(crops):
    big = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    # Pixel centres: x_big = (x + 0.5) * factor - 0.5.
    keypoints = (predictions.keypoints_input[i] + 0.5) * factor - 0.5
    drawn.append(visualize.draw_pose(big, keypoints, predictions.scores[i], spec,
                                     threshold=0.2))
  return visualize.image_grid(drawn, columns=min(8, len(drawn)))
