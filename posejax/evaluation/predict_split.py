"""Predictions for every scored instance of an eval split, in batches.

`make_split_predict_fn(setup)` builds the jitted prediction of a run's eval
once (flip test as `eval.flip_test` says, stage maps when pictures are
drawn); `predict_split` runs it over `pipeline.eval_dataset` (annotated
boxes, or the person detections of `eval.boxes`) and returns `Predictions`
in image pixels, not yet post-processed (posejax/evaluation/postprocess.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import numpy as np

from posejax import distributed
from posejax import geometry
from posejax import sharding
from posejax.data import pipeline
from posejax.evaluation import detections
from posejax.evaluation.predictions import Predictions
from posejax.inference import predict_fn as predict_fn_lib


def make_split_predict_fn(setup, pictures: bool):
  """The run's jitted eval prediction; with `pictures`, also stage maps
  (their maximum over the joints) for the pictures of the first crops."""
  config = setup.config
  flip_index = setup.spec.flip_index if config.eval.flip_test else None
  return predict_fn_lib.make_predict_fn(setup.model, setup.codec, flip_index,
                                        stage_maps='max' if pictures else '')


def predict_split(setup, variables, predict_fn=None, keep_images: int = 0):
  """Predictions for every scored instance of the eval split (not post-processed).

  `predict_fn` is `make_split_predict_fn(setup, keep_images > 0)`, built
  here if not given (a periodic evaluation passes the one it keeps, so that
  it compiles once per run). Also returns the first `keep_images` crops and
  their stage maps (`predict_batches`).
  """
  config = setup.config
  boxes = None
  path = detections.detection_file(config)
  if path is not None:
    boxes = detections.load_detections(path, config.eval.box_score_threshold)
  ds = pipeline.eval_dataset(setup.builder, config, detections=boxes,
                             process_index=jax.process_index(),
                             process_count=jax.process_count())
  if predict_fn is None:
    predict_fn = make_split_predict_fn(setup, keep_images > 0)
  return predict_batches(
      predict_fn, variables, ds.as_numpy_iterator(), setup.mesh,
      config.eval.batch_size, tuple(config.input.size), keep_images=keep_images,
      ground_truth_boxes=boxes is None,
      extras=setup.builder.EVAL_EXTRAS if boxes is None else (),
      crop=config.input.crop)


def predict_batches(predict_fn, variables, batches: Iterable[dict], mesh,
                    batch_size: int, input_size, keep_images: int = 0,
                    ground_truth_boxes: bool = True,
                    extras: Sequence[str] = (),
                    crop: str = 'centred'):
  """Runs `predict_fn` over host batches of `pipeline.eval_dataset`.

  `batch_size` is global; this process's batches hold its share of each
  (`sharding.local_batch_size`). A short last batch is padded
  (`sharding.pad_batch`) so the jitted function compiles once, and with
  several processes every process runs the same number of steps
  (`distributed.lockstep`); padding rows are dropped again. Returns the
  `Predictions` of every instance of every process (keypoints mapped back to image pixels
  with the inverse of the `crop` the pipeline made, `geometry.input_to_image`;
  the batch fields named in `extras` go to `Predictions.extras`), the first
  `keep_images` crops of this process, and their stage maps when `predict_fn` makes them
  (`inference.predict_fn.make_predict_fn(..., stage_maps=...)`; else None).
  """
  sharding.check_batch_size(batch_size, mesh, 'eval.batch_size')
  local_size = sharding.local_batch_size(batch_size)
  blank = lambda: {'image': np.zeros((1, *input_size, 3), np.uint8)}
  columns: dict[str, list] = {}
  kept, kept_maps = [], []
  for batch, real in distributed.lockstep(batches, blank):
    padded, valid = sharding.pad_batch({'image': batch['image']}, local_size)
    outputs = predict_fn(variables, sharding.global_batch(padded, mesh)['image'])
    if not real:  # this process is done; the others still need its devices
      continue
    keypoints, scores = (sharding.host_rows(x, mesh) for x in outputs[:2])
    rows = {'keypoints_input': keypoints[valid], 'scores': scores[valid]}
    rows.update({k: v for k, v in batch.items() if k != 'image'})
    for k, v in rows.items():
      columns.setdefault(k, []).append(np.asarray(v))
    if len(kept) < keep_images:
      wanted = keep_images - len(kept)
      kept.extend(batch['image'][:wanted])
      if len(outputs) > 2:
        maps = sharding.host_rows(outputs[2], mesh)
        kept_maps.extend(maps[:len(batch['image'])][:wanted])
  # Every process's instances, in process order (each read a contiguous
  # share of the split): the single-process predictions on every process.
  shares = distributed.allgather_objects(
      {k: np.concatenate(v) for k, v in columns.items()})
  shares = [share for share in shares if share]
  if not shares:
    raise ValueError(
        'No instance to predict: the eval split has no scored instance (or, '
        'with config.eval.boxes, no kept person detection on its images).')
  c = {k: np.concatenate([share[k] for share in shares]) for k in shares[0]}
  predictions = Predictions(
      image_id=c['image_id'],
      keypoints=geometry.input_to_image(c['keypoints_input'], c['center'],
                                        c['scale'], input_size, crop),
      keypoints_input=c['keypoints_input'], scores=c['scores'],
      gt_keypoints=c['gt_keypoints'], visibility=c['visibility'], bbox=c['bbox'],
      center=c['center'], scale=c['scale'], box_score=c['box_score'],
      ground_truth_boxes=ground_truth_boxes,
      extras={k: c[k] for k in extras})
  return predictions, np.asarray(kept), np.asarray(kept_maps) if kept_maps else None
