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

Variants: `:hg2` (2 stacks: 0.883 in the same README); `smoke` (e.g.
`:hg2,smoke`) runs the recipe's whole path quickly: the same structure at a
few channels, a 32x32 input, batches of 2, a few steps (config_lib.smoke);
its metrics mean nothing.
"""

from __future__ import annotations

import os

import ml_collections

from posejax import config_lib

STACKS = ('hg8', 'hg2')
SMOKE_INPUT = (32, 32)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: 'hg8' (default) or 'hg2' (2 stacks); 'smoke'."""
  variants = config_lib.parse_variants(
      arg, 'configs/hourglass_mpii.py', (*STACKS, 'smoke'), exclusive=[STACKS])
  c = config_lib.base_config()

  c.dataset.update(
      name='mpii_human_pose',
      manual_dir=os.environ.get('MPII_DIR', ''),
  )

  c.input.update(
      size=(256, 256),
      # The records' box is the square of side scale * 200; 1.25 enlarges it
      # as the HRNet and pose-hg-train loaders do.
      padding=1.25,
      rotation_factor=15.0,  # clipped at +-30 degrees
      rotation_prob=1.0,
  )

  c.codec.update(sigma=1.0)  # 64x64 maps

  # Every stack supervised.
  c.model.update(name='hourglass',
                 preset=config_lib.choose(variants, STACKS, 'hg8'))

  c.optim.update(
      learning_rate=1e-3,
      decay_steps=(100_000,),
      decay_factor=0.2,  # 1e-3 -> 2e-4
  )

  c.train.update(
      global_batch_size=16,
      num_steps=200_000,
      checkpoint_every_steps=5_000,
      eval_every_steps=20_000,
  )

  c.eval.update(metric='pckh')

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
