r"""Convolutional Pose Machines (6 stages) on FashionAI garment keypoints.

  python -m posejax.main --config=configs/cpm_fashionai.py --workdir=runs/cpm_dress \
      --config.dataset.manual_dir=/data/fashionai   # or export FASHIONAI_DIR=...
  python -m posejax.eval --config=configs/cpm_fashionai.py --workdir=runs/cpm_dress --best

manual_dir holds the Tianchi training release: Annotations/train.csv and
Images/<category>/*.jpg (see posejax/data/fashionai_keypoints.py).

The default trains on the dress images (15 labelled keypoints) and
`:all` on all five categories; both are scored with the challenge's
normalised error on the held-out 10% of the training release (the test
labels were never published): `NE` and `NE/<category>` in metrics.json, in
percent. Published result: none for this recipe (CPM was not among the
challenge's published solutions); it is a reference point to compare the
other networks against.

Recipe: 6-stage CPM (MMPose layout), 256x256 input, 32x32 heatmaps (stride
8), sigma 1.5 heatmap pixels with DARK decoding, flip, scale and rotation
augmentation, Adam 5e-4 (MMPose's CPM setting), batch 32, and early stopping
on the validation heatmap loss: measured every 1,000 steps, the run stops
after 10 measurements without a new lowest, and the state with the lowest is
kept in <workdir>/best_checkpoint/ and scored at the end (`--best` scores it
again). train.num_steps is only a cap. The validation loss and NE use the same
held-out images, so the NE of the kept state is slightly optimistic.

The network predicts all 24 FashionAI channels, also for dresses: the
records keep one 24-point layout for every category (keypoints.FASHIONAI),
points a garment does not have are unlabelled, and the loss and the metric
mask them (target weight 0, not scored). Restricting the output to the 15
dress points would need a second keypoint layout for the same records; the 9
extra channels cost one 1x1 convolution's outputs per stage.

Hardware assumed: one GPU with 16 GB or more; not measured with posejax yet.

`smoke` (e.g. `:all,smoke`) runs the recipe's whole path quickly: the same
structure at a few channels, a 32x32 input, batches of 2, a few steps with
early stopping every 2 (config_lib.smoke); its metrics mean nothing.
"""

from __future__ import annotations

import os

import ml_collections

from posejax import config_lib

CATEGORIES = ('dress', 'all')
SMOKE_INPUT = (32, 32)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: 'dress' (default) or 'all' (the five categories); 'smoke'."""
  variants = config_lib.parse_variants(
      arg, 'configs/cpm_fashionai.py', (*CATEGORIES, 'smoke'),
      exclusive=[CATEGORIES])
  c = config_lib.base_config()

  c.dataset.update(
      name='fashionai_keypoints',
      config=config_lib.choose(variants, CATEGORIES, 'dress'),
      manual_dir=os.environ.get('FASHIONAI_DIR', ''),
  )

  c.input.update(
      size=(256, 256),
      # The box is the whole image (one garment an image, no box given at
      # test time): no padding beyond it.
      padding=1.0,
  )

  c.codec.update(stride=8, sigma=1.5, refine='dark')  # 32x32 maps

  # Every stage supervised.
  c.model.update(name='cpm', preset='cpm6')

  c.optim.update(
      learning_rate=5e-4,
      warmup_steps=500,
      decay_steps=(),  # constant: early stopping decides the length
  )

  c.train.update(
      global_batch_size=32,
      num_steps=100_000,  # a cap
      eval_every_steps=0,  # NE once, on the kept state
      early_stopping=dict(every_steps=1_000, patience=10),
  )

  c.eval.update(metric='fashionai_ne')

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
