r"""Keypoint codecs, with and without hard keypoint mining, on the synthetic data.

  python benchmarks/codec_ablation.py --root=runs/ablation            # train all, then the table
  python benchmarks/codec_ablation.py --root=runs/ablation --no-train # the table of runs made

Trains `configs/synthetic.py` (the quickstart: 3,000 steps, same seed, same
network) with each codec variant (`dark`: Gaussian heatmaps read with DARK,
the quickstart's default; `quarter`: the same heatmaps read with the
quarter-pixel step; `udp`; `offsets`: offset voting), each without and with
`ohkm` (the 8 hardest of 17 keypoints per instance), one after another in
`<root>/<variant>` (a finished run is only evaluated again), then prints one
Markdown table: OKS AP, PCK@0.1, wall time of the run, and the mean error of
each keypoint group on the validation split in units of sqrt(box area)
(visible keypoints, ground-truth boxes, flip test).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ('dark', 'quarter', 'udp', 'offsets',
            'dark,ohkm', 'quarter,ohkm', 'udp,ohkm', 'offsets,ohkm')
# COCO keypoint indices of each group.
GROUPS = {'face': (0, 1, 2, 3, 4), 'shoulders': (5, 6), 'elbows': (7, 8),
          'wrists': (9, 10), 'hips': (11, 12), 'knees': (13, 14), 'ankles': (15, 16)}


def _train(variant: str, workdir: str) -> float:
  start = time.perf_counter()
  subprocess.run([sys.executable, '-m', 'posejax.main',
                  f'--config=configs/synthetic.py:{variant}', f'--workdir={workdir}'],
                 cwd=REPO, check=True)
  return time.perf_counter() - start


def _group_errors(variant: str, workdir: str) -> dict[str, float]:
  """Mean normalised error per keypoint group of the run's last checkpoint."""
  sys.path.insert(0, os.path.join(REPO, 'tests'))
  from recipe_configs import load_config  # pylint: disable=g-import-not-at-top
  from posejax import experiment  # pylint: disable=g-import-not-at-top
  from posejax.evaluation import predict_split  # pylint: disable=g-import-not-at-top
  config = load_config('synthetic', variant)
  setup = experiment.Setup(config)
  variables, _ = experiment.load_variables(workdir)
  predictions, _, _ = predict_split.predict_split(setup, variables)
  visible = predictions.visibility > 0
  norm = np.sqrt(predictions.bbox[:, 2] * predictions.bbox[:, 3])[:, None]
  error = np.linalg.norm(predictions.keypoints - predictions.gt_keypoints, axis=-1) / norm
  return {name: float(error[:, list(ids)][visible[:, list(ids)]].mean())
          for name, ids in GROUPS.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--root', required=True, help='one workdir per variant below it')
  parser.add_argument('--no-train', dest='train', action='store_false',
                      help='only read the runs already made')
  args = parser.parse_args()
  rows = []
  for variant in VARIANTS:
    workdir = os.path.join(args.root, variant.replace(',', '_'))
    timing = os.path.join(workdir, 'wall_seconds.json')
    if args.train and not os.path.exists(timing):
      seconds = _train(variant, workdir)
      with open(timing, 'w') as f:
        json.dump(seconds, f)
    if not os.path.exists(timing):
      continue
    with open(timing) as f:
      seconds = json.load(f)
    steps = sorted(int(d.split('_')[1]) for d in os.listdir(os.path.join(workdir, 'eval')))
    with open(os.path.join(workdir, 'eval', f'step_{steps[-1]}', 'metrics.json')) as f:
      metrics = json.load(f)
    rows.append((variant, metrics, seconds, _group_errors(variant, workdir)))
  print('| codec | OHKM | AP | PCK@0.1 | wall | ' + ' | '.join(GROUPS) + ' |')
  print('|---|---|---:|---:|---:|' + '---:|' * len(GROUPS))
  for variant, metrics, seconds, errors in rows:
    codec, _, ohkm = variant.partition(',')
    print(f"| {codec} | {'yes' if ohkm else 'no'} | {metrics['AP']:.4f} "
          f"| {metrics['PCK@0.1']:.4f} | {seconds / 60:.1f} min | "
          + ' | '.join(f'{errors[g]:.4f}' for g in GROUPS) + ' |')


if __name__ == '__main__':
  main()
