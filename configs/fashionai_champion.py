r"""The FashionAI 2018 winner's approach on FashionAI garment keypoints.

  python -m posejax.main --config=configs/fashionai_champion.py --workdir=runs/champion \
      --config.dataset.manual_dir=/data/fashionai   # or export FASHIONAI_DIR=...
  python -m posejax.eval --config=configs/fashionai_champion.py --workdir=runs/champion

Target: 3.30% NE on the challenge's test set for the winning entry (an
ensemble behind a garment detector), 4.11% for its ResNet-50 one-stack
starting point; here on held-out training images, without a detector.

Beyond the base: all five categories, the asymmetric dilated hourglass
(ResNet-50 encoder from ImageNet weights, 3 stacks; `:1stack`), offset-voting
targets (`:heatmap`: Gaussian heatmaps with DARK), hard keypoint mining over
the batch, early stopping. `smoke` runs the whole path in a minute or two;
what differs from the write-up and why: configs/README.md.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib

VARIANTS = ('1stack', 'heatmap', 'smoke')
SMOKE_INPUT = (64, 64)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '1stack', 'heatmap', 'smoke'."""
  variants = config_lib.parse_variants(
      arg, 'configs/fashionai_champion.py', VARIANTS)
  c = config_lib.base_config()

  config_lib.use_dataset(c, 'fashionai_keypoints', config='all')

  c.input.update(
      size=(256, 256),
      padding=1.0,  # the box is the whole image (no detector)
      rotation_prob=0.5,
      rotation_factor=30.0,
      scale_factor=0.25,
  )

  c.codec.update(name='offsets', stride=4, radius=3.0, offset_weight=1.0)
  if 'heatmap' in variants:
    c.codec.update(name='heatmap', sigma=2.0, refine='dark')

  c.model.update(
      name='asymmetric_hourglass',
      preset='r50_1stack' if '1stack' in variants else 'r50_3stack',
      pretrained=config_lib.imagenet_checkpoint('resnet50-19c8e357.pth'),
  )

  # Across the batch, as the winners mined (CPN mines per instance).
  c.loss.update(ohkm_topk=8, ohkm_scope='batch')

  c.optim.update(
      learning_rate=1e-3,
      warmup_steps=500,
      decay_steps=(40_000, 60_000),
  )

  c.train.update(
      global_batch_size=32,
      num_steps=70_000,  # a cap: early stopping decides
      eval_every_steps=0,
      early_stopping=dict(every_steps=1_000, patience=10),
  )

  c.eval.update(metric='fashionai_ne')

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
