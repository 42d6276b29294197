"""Evaluation: variables -> predictions -> the dataset's metric, and the files.

`evaluate(setup, variables, workdir, step)` predicts every scored instance of
the eval split (in its annotated boxes, or in person detections with
`config.eval.boxes`), post-processes them as the official top-down code does
(`postprocess`), scores them with the run's metric (`evaluation.METRICS`;
see posejax/evaluation/__init__.py for what each writes) and writes
`<workdir>/eval/step_<N>/`: results.json (COCO results format), metrics.json
and predictions.png. `python -m posejax.eval` is its command line.

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
import tensorflow_datasets as tfds

from posejax import data
from posejax import distributed
from posejax import evaluation
from posejax import predict
from posejax import visualize
from posejax.data import pipeline
from posejax.evaluation import coco
from posejax.evaluation import detections
from posejax.evaluation.predictions import Predictions


# Instances shown with every stage's heatmaps in stages.png.
STAGE_PANELS = 4


def postprocess(predictions: Predictions, config, spec) -> Predictions:
  """Instance scores and, with detection boxes, OKS-NMS per image.

  The official top-down COCO evaluation (deep-high-resolution-net.pytorch
  COCODataset.evaluate): every instance is scored box score x mean of its
  keypoint scores above 0.2; then, with detections, greedy OKS-NMS at
  `eval.oks_nms_threshold` (0.9) removes near-duplicate people of one image,
  with the OKS scale taken from the area of each padded crop box. Returns the
  kept instances with `instance_score` set.
  """
  p = predictions.replace(instance_score=coco.rescore_instances(
      predictions.box_score, predictions.scores))
  threshold = config.eval.get('oks_nms_threshold', 0.9)
  if p.ground_truth_boxes or threshold >= 1.0:
    return p
  area = p.scale[:, 0] * p.scale[:, 1]
  keep = []
  for image_id in dict.fromkeys(p.image_id.tolist()):
    rows = np.flatnonzero(p.image_id == image_id)
    kept = coco.oks_nms(
        [{'keypoints': p.keypoints[i], 'score': p.instance_score[i],
          'area': area[i]} for i in rows], spec.oks_sigmas, threshold)
    keep.extend(rows[sorted(kept)])
  return p.take(np.asarray(keep, np.int64))


def coco_ground_truth(builder, split: str) -> dict:
  """The split's annotations as an in-memory COCO dict, for pycocotools."""
  spec = data.keypoint_spec(builder)
  images, annotations = [], []
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  for record in ds.as_numpy_iterator():
    image_id = int(record['image/id'])
    images.append({'id': image_id})
    objs = record['objects']
    for i in range(len(objs['id'])):
      kps = np.concatenate(
          [objs['keypoints'][i], objs['visibility'][i][:, None]], axis=1)
      annotations.append({
          'id': int(objs['id'][i]),
          'image_id': image_id,
          'category_id': 1,
          'bbox': [float(v) for v in objs['bbox'][i]],
          'area': float(objs['area'][i]),
          'iscrowd': int(objs['iscrowd'][i]),
          'num_keypoints': int(objs['num_keypoints'][i]),
          'keypoints': [float(v) for v in kps.reshape(-1)],
      })
  return {'images': images, 'annotations': annotations,
          'categories': [spec.coco_category()]}


def predict_split(setup, variables, keep_images: int = 0):
  """Predictions for every scored instance of the eval split (not post-processed).

  Also returns the first `keep_images` crops and their stage maps
  (`predict.predict_batches`).
  """
  config = setup.config
  boxes = None
  path = detections.detection_file(config)
  if path is not None:
    boxes = detections.load_detections(path,
                                       config.eval.get('box_score_threshold', 0.0))
  ds = pipeline.eval_dataset(setup.builder, config, detections=boxes,
                             process_index=jax.process_index(),
                             process_count=jax.process_count())
  flip_index = setup.spec.flip_index if config.eval.flip_test else None
  predict_fn = predict.make_predict_fn(setup.model, setup.codec, flip_index,
                                       config.eval.get('flip_shift', False),
                                       stage_maps='max' if keep_images else '')
  return predict.predict_batches(
      predict_fn, variables, ds.as_numpy_iterator(), setup.mesh,
      config.eval.batch_size, tuple(config.input.size), keep_images=keep_images,
      ground_truth_boxes=boxes is None,
      extras=setup.builder.EVAL_EXTRAS if boxes is None else (),
      crop=config.input.get('crop', 'centred'))


def score(setup, predictions: Predictions) -> dict[str, float]:
  """The run's metric of post-processed predictions; nan values left out."""
  split = setup.config.dataset.eval_split
  metrics = evaluation.METRICS[setup.metric](
      predictions, setup.spec, lambda: coco_ground_truth(setup.builder, split))
  return {k: float(v) for k, v in metrics.items() if not np.isnan(v)}


def evaluate(setup, variables, workdir: str, step: int, writer=None) -> dict:
  """Scores `variables` on the eval split; writes the files; returns metrics.

  With a clu `writer`, the two pictures (the prediction grid and the stage
  panels of the first crops) also go to TensorBoard as `eval/predictions`
  and `eval/stages`.
  """
  config = setup.config
  predictions, crops, stage_maps = predict_split(setup, variables,
                                                 config.eval.num_images_to_draw)
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
  kept = postprocess(predictions, config, setup.spec)
  metrics = score(setup, kept)
  out_dir = os.path.join(workdir, 'eval', f'step_{step}')
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'results.json'), 'w') as f:
    json.dump(kept.coco_results, f)
  with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
    json.dump({'step': step, 'split': config.dataset.eval_split,
               'num_instances': len(kept), **metrics}, f, indent=2)
  if len(crops):
    pictures = {
        'predictions': _prediction_grid(crops, predictions, setup.spec),
        'stages': visualize.image_grid(
            [visualize.stage_panel(crop, maps, predictions.keypoints_input[i],
                                   predictions.scores[i], setup.spec)
             for i, (crop, maps) in enumerate(zip(crops[:STAGE_PANELS],
                                                  stage_maps))], columns=1),
    }
    for name, picture in pictures.items():
      visualize.save_png(os.path.join(out_dir, f'{name}.png'), picture)
    if writer is not None:
      writer.write_images(step, {f'eval/{k}': v[None] for k, v in pictures.items()})
  logging.info('Eval at step %d: %s', step,
               ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
  return metrics


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
