r"""Stacked Hourglass (8 stacks) on MPII Human Pose, the princeton-vl recipe.

  python -m posejax.main --config=configs/hourglass_mpii.py --workdir=runs/hg8_mpii \
      --config.dataset.manual_dir=/data/mpii   # or export MPII_DIR=/data/mpii

manual_dir holds images/*.jpg and annot/{mpii_train,mpii_valid}.json plus
annot/gt_valid.mat (the head boxes PCKh needs), as the official HRNet code
distributes them (see posejax/data/mpii_human_pose.py).

Published result it targets: PCKh@0.5 = 0.902 on the validation set for the
8-stack model of github.com/princeton-vl/pytorch_stacked_hourglass (README,
"Pretrained Models"; Newell et al., ECCV 2016 reported 0.881 with RMSprop).
That number is their test.py's "total": every annotated joint counted,
pelvis and thorax included, so compare it with `PCKh@0.5/Mean_all` in
metrics.json; `PCKh@0.5` is the official MPII mean, which leaves pelvis and
thorax out (as the HRNet evaluation does).

Validation split, honestly: princeton-vl evaluates on annot/valid.h5 of
Newell's pose-hg-train (2,958 people); this recipe evaluates on HRNet's
mpii_valid.json, which also holds 2,958 people and is generally taken to be
the same split (from Tompson et al., CVPR 2015). The two files have not been
compared entry by entry here, and their head-size normalisers come from
different files (valid.h5 `normalize` versus gt_valid.mat head boxes).

Recipe (princeton-vl task/pose.py): 8 stacks of 256 features, 256x256 input,
64x64 heatmaps, batch 16, Adam at 1e-3 dropped to 2e-4 after 100k iterations,
about 200k iterations in all (README), flip test without a heatmap shift.
Their Gaussian has sigma = output_res / 64 = 1 heatmap pixel. Augmentation
there: rotation uniform in +-30 degrees, scale uniform in [0.75, 1.25], flip,
and colour jitter; the pipeline here draws clipped normals with the same
ranges (scale_factor 0.25, rotation_factor 15 clipped at +-30) and has no
colour jitter. Their loss is the unmasked heatmap MSE; here unlabelled joints
are masked (target weight 0).

Hardware assumed: one GPU with 16 GB or more (the official model trained on
one or a few GPUs at batch 16); not measured with posejax yet.
"""

from __future__ import annotations

import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' (8 stacks) or 'hg2' (2 stacks: 0.883 in the same README)."""
  if arg not in (None, '', 'hg8', 'hg2'):
    raise ValueError(f"Unknown variant {arg!r} of configs/hourglass_mpii.py; "
                     "known: 'hg8', 'hg2'.")
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict(dict(
      name='mpii_human_pose',
      config='default',
      data_dir=os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'),
      manual_dir=os.environ.get('MPII_DIR', ''),
      keypoints='mpii',
      train_split='train',
      eval_split='validation',
  ))

  c.input = ml_collections.ConfigDict(dict(
      size=(256, 256),
      # The records' box is the square of side scale * 200; 1.25 enlarges it
      # as the HRNet and pose-hg-train loaders do.
      padding=1.25,
      scale_factor=0.25,
      rotation_factor=15.0,  # clipped at +-30 degrees
      rotation_prob=1.0,
      flip=True,
      half_body_prob=0.0,
      half_body_min_keypoints=8,
      shuffle_buffer=16384,
      prefetch=2,
  ))

  c.codec = ml_collections.ConfigDict(dict(
      name='heatmap', stride=4, sigma=1.0, refine='quarter'))  # 64x64 maps

  c.model = ml_collections.ConfigDict(dict(
      name='hourglass', preset=arg or 'hg8', dtype='float32'))

  c.loss = ml_collections.ConfigDict(dict(name='mse'))  # every stack supervised

  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-3,
      warmup_steps=0,
      schedule='step',
      decay_steps=(100_000,),
      decay_factor=0.2,  # 1e-3 -> 2e-4
      weight_decay=0.0,
      grad_clip_norm=0.0,
  ))

  c.train = ml_collections.ConfigDict(dict(
      global_batch_size=16,
      num_steps=200_000,
      log_every_steps=100,
      checkpoint_every_steps=5_000,
      keep_checkpoints=2,
      eval_every_steps=20_000,
  ))

  c.eval = ml_collections.ConfigDict(dict(
      batch_size=64,
      metric='pckh',
      boxes='ground_truth',
      box_score_threshold=0.0,
      oks_nms_threshold=0.9,
      flip_test=True,
      flip_shift=False,
      num_images_to_draw=32,
  ))

  c.mesh = ml_collections.ConfigDict(dict(data=-1))
  return c
