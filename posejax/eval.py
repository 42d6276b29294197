"""`python -m posejax.eval`: checkpoint -> predictions -> metrics.

Predicts every scored instance of the eval split (in ground-truth boxes, or in
person detections with `config.eval.boxes`), writes a COCO-format results
file, scores it with the dataset's native metric and draws a grid of
predictions. Everything goes to `<workdir>/eval/step_<N>/`: results.json,
metrics.json, predictions.png.

The metric is `config.eval.metric`, or when that is empty the one
DEFAULT_METRICS names for `config.dataset.name`. METRICS maps each name to
its scorer, which turns the predictions into a flat name -> float dict, so
that metrics.json and the clu writers take it as it is:

  coco          AP, AP50, AP75, APm, APl, AR, ... (pycocotools OKS), and
                PCK@0.1 (box-normalised) with ground-truth boxes
  pckh          PCKh@0.5 and PCKh@0.1 (the official mean, without pelvis and
                thorax), per group ('PCKh@0.5/Wrist'), and over all joints
                ('PCKh@0.5/Mean_all')
  fashionai_ne  NE and NE/<category>, in percent
  nme           NME and FR@0.1 in percent, AUC@0.1 in [0, 1]; on WFLW also
                per attribute subset ('NME/pose', 'FR@0.1/pose', ...)
  rmse          RMSE and RMSE/<keypoint>, in pixels of the original image

A value that is undefined for the split (a category or subset with nothing
to score) is left out rather than written as nan.
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags
from absl import logging
import cv2
import jax
from ml_collections import config_flags
import numpy as np
import orbax.checkpoint as ocp

import posejax
from posejax import config_lib
from posejax import keypoints as keypoints_lib
from posejax import predict
from posejax import visualize
from posejax.evaluation import coco
from posejax.evaluation import faces
from posejax.evaluation import fashionai
from posejax.evaluation import mpii
from posejax.evaluation import pck


# ------------------------------------------------------------------ scorers
# Each takes the Setup and the predictions of `predict.predict_batches`
# (after `postprocess`) with the COCO results made of them; returns floats.

def _coco_metrics(setup, out, results) -> dict[str, float]:
  from posejax.data import pipeline
  ground_truth = pipeline.ground_truth(setup.builder, setup.config.dataset.eval_split)
  metrics = coco.coco_keypoint_metrics(ground_truth, results, setup.spec)
  if pipeline.detection_file(setup.config) is None:
    # One prediction per annotated box: the box's own ground truth compares.
    metrics['PCK@0.1'] = pck.box_pck(out['pred_keypoints'], out['gt_keypoints'],
                                     out['visibility'], out['bbox'], 0.1)['mean']
  return metrics


def _pckh_metrics(setup, out, results) -> dict[str, float]:
  del results
  head_boxes = out['head_box']
  known = np.all(np.isfinite(head_boxes), axis=1)
  if not known.any():
    raise ValueError(
        f'PCKh needs head boxes, and no person of split '
        f'{setup.config.dataset.eval_split!r} has one (MPII: put gt_valid.mat '
        'in <manual_dir>/annot/ and rebuild the records).')
  if not known.all():
    logging.warning('PCKh: %d of %d people have no head box and are not '
                    'scored.', int((~known).sum()), len(known))
  tables = mpii.mpii_pckh(out['pred_keypoints'][known], out['gt_keypoints'][known],
                          out['visibility'][known], head_boxes[known], (0.5, 0.1))
  metrics = {}
  for name, table in tables.items():
    metrics[name] = table['Mean']
    metrics.update({f'{name}/{group}': table[group] for group in mpii.MPII_GROUPS})
    metrics[f'{name}/Mean_all'] = table['Mean_all']
  return metrics


def _fashionai_metrics(setup, out, results) -> dict[str, float]:
  del setup, results
  categories = np.asarray(keypoints_lib.FASHIONAI_CATEGORIES)[out['category']]
  ne = fashionai.fashionai_ne(out['pred_keypoints'], out['gt_keypoints'],
                              out['visibility'], categories)
  metrics = {'NE': ne['NE']}
  metrics.update({f'NE/{c}': v['NE'] for c, v in ne['per_category'].items()})
  return metrics


def _nme_metrics(setup, out, results) -> dict[str, float]:
  del setup, results
  subsets = None
  if 'attributes' in out:  # WFLW: the test subsets are its attribute flags
    from posejax.data import face_landmarks
    subsets = {name: out['attributes'][:, i] > 0
               for i, name in enumerate(face_landmarks.WFLW_ATTRIBUTES)}
  # The eye corners follow the landmark count (faces.EYE_CORNERS_BY_NUM_LANDMARKS).
  nme = faces.face_nme(out['pred_keypoints'], out['gt_keypoints'],
                       visibility=out['visibility'], subsets=subsets)
  metrics = {}
  for suffix, summary in [('', nme)] + [(f'/{k}', v) for k, v in nme['subsets'].items()]:
    metrics[f'NME{suffix}'] = 100.0 * summary['nme']
    metrics[f'FR@0.1{suffix}'] = 100.0 * summary['failure_rate']
    metrics[f'AUC@0.1{suffix}'] = summary['auc']
  return metrics


def _rmse_metrics(setup, out, results) -> dict[str, float]:
  del results
  rmse = faces.kaggle_rmse(out['pred_keypoints'], out['gt_keypoints'], out['visibility'])
  metrics = {'RMSE': rmse['rmse']}
  metrics.update({f'RMSE/{name}': v for name, v in
                  zip(setup.spec.keypoint_names, rmse['per_keypoint'])})
  return metrics


METRICS = {
    'coco': _coco_metrics,
    'pckh': _pckh_metrics,
    'fashionai_ne': _fashionai_metrics,
    'nme': _nme_metrics,
    'rmse': _rmse_metrics,
}

# config.dataset.name -> its native metric, used when config.eval.metric is ''.
DEFAULT_METRICS = {
    'coco_keypoints': 'coco',
    'mpii_human_pose': 'pckh',
    'fashionai_keypoints': 'fashionai_ne',
    'wflw': 'nme',
    'ibug_300w': 'nme',
    'kaggle_facial_keypoints': 'rmse',
}


def metric_name(config) -> str:
  """The metric `config` evaluates with; checks eval.metric and eval.boxes.

  Raises:
    ValueError: an unknown metric, no default for the dataset, or detection
      boxes with a metric other than 'coco'.
    FileNotFoundError: eval.boxes names a file that is not there.
  """
  from posejax.data import pipeline
  name = config.eval.get('metric')
  if not name:
    if config.dataset.name not in DEFAULT_METRICS:
      raise ValueError(
          f'dataset.name {config.dataset.name!r} has no default metric (known '
          f'datasets: {sorted(DEFAULT_METRICS)}); set --config.eval.metric to '
          f'one of {sorted(METRICS)}.')
    name = DEFAULT_METRICS[config.dataset.name]
  if name not in METRICS:
    raise ValueError(
        f'Unknown eval.metric {name!r} (dataset {config.dataset.name!r}); '
        f'known: {sorted(METRICS)}. Set --config.eval.metric.')
  path = pipeline.detection_file(config)
  if path is not None:
    if name != 'coco':
      raise ValueError(
          f"eval.boxes is a detection file, which only the 'coco' metric can "
          f"score (against every annotation); the {name!r} metric needs "
          "eval.boxes='ground_truth'.")
    if not os.path.isfile(path):
      pipeline.load_detections(path)  # raises with where to get the file
  return name


def postprocess(out: dict, config, spec) -> dict:
  """Instance scores and, with detection boxes, OKS-NMS per image.

  The official top-down COCO evaluation (deep-high-resolution-net.pytorch
  COCODataset.evaluate): every instance is scored box score x mean of its
  keypoint scores above 0.2; then, with detections, greedy OKS-NMS at
  `eval.oks_nms_threshold` (0.9) removes near-duplicate people of one image,
  with the OKS scale taken from the area of each padded crop box. Returns a
  new dict of the kept instances with `instance_score`; the arrays of `out`
  are not changed.
  """
  from posejax.data import pipeline
  instance_score = coco.rescore_instances(out['box_score'], out['pred_scores'])
  n = len(instance_score)
  keep = np.arange(n)
  threshold = config.eval.get('oks_nms_threshold', 0.9)
  if pipeline.detection_file(config) is not None and threshold < 1.0:
    area = out['scale'][:, 0] * out['scale'][:, 1]
    keep = []
    for image_id in dict.fromkeys(out['image_id'].tolist()):
      rows = np.flatnonzero(out['image_id'] == image_id)
      kept = coco.oks_nms(
          [{'keypoints': out['pred_keypoints'][i], 'score': instance_score[i],
            'area': area[i]} for i in rows], spec.oks_sigmas, threshold)
      keep.extend(rows[sorted(kept)])
    keep = np.asarray(keep, np.int64)
  kept = {k: v[keep] for k, v in out.items()
          if isinstance(v, np.ndarray) and v.shape[:1] == (n,) and k != 'images'}
  kept['instance_score'] = instance_score[keep]
  return kept


def evaluate(setup, variables, workdir: str, step: int) -> dict:
  """Scores `variables` on the eval split; writes the files; returns metrics."""
  from posejax.data import pipeline

  config, spec = setup.config, setup.spec
  metric = metric_name(config)
  ds = pipeline.eval_dataset(setup.builder, config)
  flip_index = spec.flip_index if config.eval.flip_test else None
  predict_fn = predict.make_predict_fn(setup.model, setup.codec, flip_index,
                                       config.eval.get('flip_shift', False))
  out = predict.predict_batches(
      predict_fn, variables, ds.as_numpy_iterator(), setup.mesh,
      config.eval.batch_size, tuple(config.input.size),
      keep_images=config.eval.num_images_to_draw)
  kept = postprocess(out, config, spec)
  results = coco.keypoint_results(kept['image_id'], kept['pred_keypoints'],
                                  kept['pred_scores'], kept['instance_score'])
  metrics = METRICS[metric](setup, kept, results)
  metrics = {k: float(v) for k, v in metrics.items() if not np.isnan(v)}

  out_dir = os.path.join(workdir, 'eval', f'step_{step}')
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'results.json'), 'w') as f:
    json.dump(results, f)
  with open(os.path.join(out_dir, 'metrics.json'), 'w') as f:
    json.dump({'step': step, 'split': config.dataset.eval_split,
               'num_instances': len(results), **metrics}, f, indent=2)
  if len(out['images']):
    _draw_predictions(out, spec, os.path.join(out_dir, 'predictions.png'))
  logging.info('Eval at step %d: %s', step,
               ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
  return metrics


def _draw_predictions(out, spec, path, min_height=192):
  """Grid of the first crops with their predicted skeletons, enlarged."""
  crops = out['images']
  factor = max(1, -(-min_height // crops.shape[1]))
  drawn = []
  for i, crop in enumerate(crops):
    big = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    # Pixel centres: x_big = (x + 0.5) * factor - 0.5.
    keypoints = (out['pred_keypoints_input'][i] + 0.5) * factor - 0.5
    drawn.append(visualize.draw_pose(big, keypoints, out['pred_scores'][i], spec,
                                     threshold=0.2))
  visualize.save_png(path, visualize.image_grid(drawn, columns=min(8, len(drawn))))


def load_variables(workdir: str, step: int | None = None, best: bool = False):
  """params and batch_stats of a checkpoint (latest if `step` is None).

  With `best`, from the state early stopping kept (the lowest validation
  loss, `train.BEST_CHECKPOINT_DIR`) instead of the regular checkpoints.
  """
  from posejax import train
  directory = os.path.join(os.path.abspath(workdir),
                           train.BEST_CHECKPOINT_DIR if best else 'checkpoints')
  # Orbax would create a missing directory; a wrong --workdir should not.
  manager = ocp.CheckpointManager(directory) if os.path.isdir(directory) else None
  found = list(manager.all_steps()) if manager else []
  step = (manager.latest_step() if manager else None) if step is None else step
  if step is None or step not in found:
    raise FileNotFoundError(
        f'No checkpoint {"" if step is None else f"for step {step} "}in '
        f'{directory} (found steps {found}). '
        + ('Only runs with train.early_stopping keep a best checkpoint.' if best
           else 'Train first with `python -m posejax.main --config=... '
           '--workdir=...`.'))
  restored = manager.restore(step, args=ocp.args.StandardRestore())
  variables = {'params': restored['params'],
               'batch_stats': restored.get('batch_stats', {})}
  return variables, step


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from posejax import train
  flag_values = flags.FLAGS
  try:
    setup = train.Setup(flag_values.config)
    variables, step = load_variables(flag_values.workdir, flag_values.step,
                                     flag_values.best)
  except (train.SetupError, FileNotFoundError) as e:
    raise SystemExit(f'posejax: {e}') from None
  variables = jax.device_put(variables, jax.sharding.NamedSharding(
      setup.mesh, jax.sharding.PartitionSpec()))
  metrics = evaluate(setup, variables, flag_values.workdir, step)
  print(json.dumps({'step': step, **metrics}, indent=2))


if __name__ == '__main__':
  posejax.restart_with_huge_pages()  # See its docstring: CPU step time.
  # Flags are defined only when run as a program, so that the training loop
  # can import `evaluate` next to main.py's own --config flag.
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
  flags.DEFINE_string('workdir', None, 'Run directory with checkpoints/.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
  flags.DEFINE_bool('best', False, 'Evaluate the state of the lowest validation '
                    'loss that early stopping kept (train.early_stopping).')
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=config_lib.parse_flags)
