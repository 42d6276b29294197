r"""One hourglass with full-resolution heatmaps on the Kaggle facial keypoints.

  python -m posejax.main --config=configs/hourglass_facial_keypoints.py \
      --workdir=runs/hg1_faces --config.dataset.manual_dir=/data/kaggle_faces
      # or export KAGGLE_FACES_DIR=/data/kaggle_faces

manual_dir holds training.csv and test.csv of the Kaggle "Facial Keypoints
Detection" competition (see posejax/data/kaggle_facial_keypoints.py).

Metric: RMSE in pixels of the 96x96 images over the labelled coordinates
(the competition's score), on the held-out 10% of training.csv: `RMSE` and
`RMSE/<keypoint>` in metrics.json. Target: RMSE 1.81, reached by a public
solution of this kind (one hourglass, heatmaps at the input resolution);
not reproduced here yet.

Recipe: a single hourglass stack (256 features, depth 4) whose stem keeps
the resolution (`model.stride=1`: no stride-2 conv, no max-pool), so the
15 heatmaps are 96x96 like the images, sigma 2 pixels, DARK decoding. Most
rows of training.csv label only 4 of the 15 points; the loss is masked for
the missing ones (their target weight is visibility > 0, i.e. 0), so the
network is neither taught that they are absent nor where they are. Light
augmentation (scale 0.1, rotation 10 degrees on half the faces, flip with
left/right swapped), Adam 1e-3 with cosine decay, batch 32 for 100 epochs of
the about 6,340 training faces.

Hardware assumed: one GPU (a few GB); the full-resolution hourglass is slow
on a CPU. Not measured with posejax yet.

`smoke` runs the recipe's whole path quickly: the same structure at a few
channels, a 16x16 input, batches of 2, a few steps (config_lib.smoke); its
metrics mean nothing.
"""

from __future__ import annotations

import os

import ml_collections

from posejax import config_lib

# training.csv has 7,049 rows; the validation hold-out takes about 10%.
TRAIN_FACES = 6_340
SMOKE_INPUT = (16, 16)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: 'smoke'."""
  variants = config_lib.parse_variants(
      arg, 'configs/hourglass_facial_keypoints.py', ('smoke',))
  c = config_lib.base_config()

  c.dataset.update(
      name='kaggle_facial_keypoints',
      manual_dir=os.environ.get('KAGGLE_FACES_DIR', ''),
  )

  c.input.update(
      size=(96, 96),
      padding=1.0,  # the box is the whole 96x96 face crop
      scale_factor=0.1,
      rotation_factor=10.0,
      rotation_prob=0.5,
      shuffle_buffer=8192,
  )

  c.codec.update(stride=1, sigma=2.0, refine='dark')  # 96x96 maps

  # Masked by visibility: rows label only some of the points.
  c.model.update(name='hourglass', num_stacks=1, features=256, depth=4,
                 stride=1)

  batch = 32
  c.optim.update(
      learning_rate=1e-3,
      warmup_steps=200,
      schedule='cosine',
  )

  c.train.update(
      global_batch_size=batch,
      # 100 epochs: 19,900 steps.
      num_steps=config_lib.steps_for_epochs(100, TRAIN_FACES, batch),
      checkpoint_every_steps=2_000,
      eval_every_steps=5_000,
  )

  c.eval.update(metric='rmse')

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
