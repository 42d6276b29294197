"""`python -m posejax.eval`: checkpoint -> predictions -> metrics.

Predicts every scored instance of the eval split (with ground-truth boxes),
writes a COCO-format results file, scores it with pycocotools (OKS AP/AR) and
box-normalised PCK@0.1, and draws a grid of predictions. Everything goes to
`<workdir>/eval/step_<N>/`: results.json, metrics.json, predictions.png.
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
import orbax.checkpoint as ocp

from posejax import config_lib
from posejax import predict
from posejax import visualize
from posejax.evaluation import coco
from posejax.evaluation import pck


def evaluate(setup, variables, workdir: str, step: int) -> dict:
  """Scores `variables` on the eval split; writes the files; returns metrics."""
  from posejax.data import pipeline

  config, spec = setup.config, setup.spec
  ds = pipeline.eval_dataset(setup.builder, config)
  flip_index = spec.flip_index if config.eval.flip_test else None
  predict_fn = predict.make_predict_fn(setup.model, setup.codec, flip_index)
  out = predict.predict_batches(
      predict_fn, variables, ds.as_numpy_iterator(), setup.mesh,
      config.eval.batch_size, tuple(config.input.size),
      keep_images=config.eval.num_images_to_draw)

  instance_scores = coco.rescore_instances(out['box_score'], out['pred_scores'])
  results = coco.keypoint_results(out['image_id'], out['pred_keypoints'],
                                  out['pred_scores'], instance_scores)
  ground_truth = pipeline.ground_truth(setup.builder, config.dataset.eval_split)
  metrics = coco.coco_keypoint_metrics(ground_truth, results, spec)
  # Ground truth came through the same crop; map it back the same way.
  gt_image = predict.input_to_image(
      out['keypoints'], out['center'], out['scale'], tuple(config.input.size))
  box = pck.box_pck(out['pred_keypoints'], gt_image, out['visibility'], out['bbox'], 0.1)
  metrics['PCK@0.1'] = float(box['mean'])
  metrics = {k: float(v) for k, v in metrics.items()}

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


def load_variables(workdir: str, step: int | None = None):
  """params and batch_stats of a checkpoint (latest if `step` is None)."""
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  manager = ocp.CheckpointManager(directory)
  step = manager.latest_step() if step is None else step
  if step is None or step not in manager.all_steps():
    raise FileNotFoundError(
        f'No checkpoint {"" if step is None else f"for step {step} "}in '
        f'{directory} (found steps {list(manager.all_steps())}). Train first '
        'with `python -m posejax.main --config=... --workdir=...`.')
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
    variables, step = load_variables(flag_values.workdir, flag_values.step)
  except (train.SetupError, FileNotFoundError) as e:
    raise SystemExit(f'posejax: {e}') from None
  variables = jax.device_put(variables, jax.sharding.NamedSharding(
      setup.mesh, jax.sharding.PartitionSpec()))
  metrics = evaluate(setup, variables, flag_values.workdir, step)
  print(json.dumps({'step': step, **metrics}, indent=2))


if __name__ == '__main__':
  # Flags are defined only when run as a program, so that the training loop
  # can import `evaluate` next to main.py's own --config flag.
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
  flags.DEFINE_string('workdir', None, 'Run directory with checkpoints/.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=config_lib.parse_flags)
