r"""Stacked Hourglass (8 stacks) on MPII Human Pose, the princeton-vl recipe.

  python -m posejax.main --config=configs/hourglass_mpii.py --workdir=runs/hg8_mpii \
      --config.dataset.manual_dir=/data/mpii   # or export MPII_DIR=/data/mpii

Target: PCKh@0.5 0.902 on the validation set, every joint counted
(`PCKh@0.5/Mean_all` in metrics.json), for the 8 stacks of
github.com/princeton-vl/pytorch_stacked_hourglass (README); `:hg2` 0.883.
Not measured with posejax yet.

Beyond the base: princeton-vl task/pose.py, 256x256 input, 64x64 heatmaps
of sigma 1, rotation on every crop, batch 16, Adam 1e-3 dropped to 2e-4
after 100k of 200k steps, flip test; no colour jitter, unlabelled joints
masked. `smoke` runs the whole path in a minute or two; the validation
split, data layout and the reasons: configs/README.md.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib

STACKS = ('hg8', 'hg2')
VARIANTS = (*STACKS, 'smoke')
EXCLUSIVE = (STACKS,)  # one at most of each; the first is the default
SMOKE_INPUT = (32, 32)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: 'hg8' (default) or 'hg2' (2 stacks); 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/hourglass_mpii.py', VARIANTS,
                                       EXCLUSIVE)
  c = config_lib.base_config()

  config_lib.use_dataset(c, 'mpii_human_pose')

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
                 preset=config_lib.choose(variants, STACKS))

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
