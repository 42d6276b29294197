r"""Convolutional Pose Machines (6 stages) on FashionAI garment keypoints.

  python -m posejax.main --config=configs/cpm_fashionai.py --workdir=runs/cpm_dress \
      --config.dataset.manual_dir=/data/fashionai   # or export FASHIONAI_DIR=...
  python -m posejax.eval --config=configs/cpm_fashionai.py --workdir=runs/cpm_dress --best

Target: none published (CPM was not among the challenge's solutions); a
reference point for the other networks, scored by the challenge's normalised
error (NE) on held-out training images. Not measured with posejax yet.

Beyond the base: the dress images (`:all`: the five categories), the 6-stage
CPM, 256x256 whole-image crops, stride 8, sigma 1.5 with DARK decoding, Adam
5e-4, and early stopping on the validation loss (`--best` scores the kept
state). `smoke` runs the whole path in a minute or two; more:
configs/README.md.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib

CATEGORIES = ('dress', 'all')
VARIANTS = (*CATEGORIES, 'smoke')
EXCLUSIVE = (CATEGORIES,)  # one at most of each; the first is the default
SMOKE_INPUT = (32, 32)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: 'dress' (default) or 'all' (the five categories); 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/cpm_fashionai.py', VARIANTS,
                                       EXCLUSIVE)
  c = config_lib.base_config()

  config_lib.use_dataset(c, 'fashionai_keypoints',
                         config=config_lib.choose(variants, CATEGORIES))

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
