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
"""

from __future__ import annotations

import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' (dress) or 'all' (the five categories)."""
  if arg not in (None, '', 'dress', 'all'):
    raise ValueError(f"Unknown variant {arg!r} of configs/cpm_fashionai.py; "
                     "known: 'dress', 'all'.")
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict(dict(
      name='fashionai_keypoints',
      config=arg or 'dress',
      data_dir=os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'),
      manual_dir=os.environ.get('FASHIONAI_DIR', ''),
      keypoints='fashionai',
      train_split='train',
      eval_split='validation',
  ))

  c.input = ml_collections.ConfigDict(dict(
      size=(256, 256),
      # The box is the whole image (one garment an image, no box given at
      # test time): no padding beyond it.
      padding=1.0,
      scale_factor=0.25,
      rotation_factor=15.0,
      rotation_prob=0.6,
      flip=True,
      half_body_prob=0.0,
      half_body_min_keypoints=8,
      shuffle_buffer=16384,
      prefetch=2,
  ))

  c.codec = ml_collections.ConfigDict(dict(
      name='heatmap', stride=8, sigma=1.5, refine='dark'))  # 32x32 maps

  c.model = ml_collections.ConfigDict(dict(
      name='cpm', preset='cpm6', dtype='float32'))

  c.loss = ml_collections.ConfigDict(dict(name='mse'))  # every stage supervised

  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=5e-4,
      warmup_steps=500,
      schedule='step',
      decay_steps=(),  # constant: early stopping decides the length
      decay_factor=0.1,
      weight_decay=0.0,
      grad_clip_norm=0.0,
  ))

  c.train = ml_collections.ConfigDict(dict(
      global_batch_size=32,
      num_steps=100_000,  # a cap
      log_every_steps=100,
      checkpoint_every_steps=1_000,
      keep_checkpoints=2,
      eval_every_steps=0,  # NE once, on the kept state
      early_stopping=dict(every_steps=1_000, patience=10),
  ))

  c.eval = ml_collections.ConfigDict(dict(
      batch_size=64,
      metric='fashionai_ne',
      boxes='ground_truth',
      box_score_threshold=0.0,
      oks_nms_threshold=0.9,
      flip_test=True,
      flip_shift=False,
      num_images_to_draw=32,
  ))

  c.mesh = ml_collections.ConfigDict(dict(data=-1))
  return c
