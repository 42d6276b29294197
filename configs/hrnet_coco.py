r"""HRNet on COCO 2017 person keypoints: the official top-down recipe.

  python -m posejax.main --config=configs/hrnet_coco.py --workdir=runs/hrnet_w32_256x192 \
      --config.dataset.manual_dir=/data/coco   # or export COCO_DIR=/data/coco

Target: COCO val2017 AP with the official detections and flip test
(deep-high-resolution-net.pytorch README; Sun et al., CVPR 2019, Table 1):
HRNet-W32 256x192 74.4 (default), `:w48` 75.1, `:384x288` 75.8,
`:w48,384x288` 76.3. Not measured with posejax yet.

Beyond config_lib.coco_top_down: HRNet from ImageNet weights, scale 0.35,
rotation 45 degrees, half-body 0.3, sigma 3 at 384x288, 210 epochs (x0.1 at
170 and 200), batch 128 (96 for W48 at 384x288). `official` evaluates the
official checkpoints, `smoke` runs the whole path in a minute or two; data,
evaluation, hardware and the reasons: configs/README.md.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib

VARIANTS = ('w48', '384x288', 'official', 'smoke')
SMOKE_INPUT = (64, 48)  # (height, width)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' (W32 256x192), 'w48', '384x288', 'official', 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/hrnet_coco.py', VARIANTS)
  w48, large = 'w48' in variants, '384x288' in variants
  c = config_lib.base_config()

  # An epoch is ceil(149,813 / 128) = 1,171 steps (1,561 at batch 96), so
  # 245,910 steps with decays at 199,070 and 234,200 for batch 128.
  batch = 96 if (w48 and large) else 128  # 24 or 32 per GPU x 4 GPUs
  config_lib.coco_top_down(c, batch, epochs=210, decay_epochs=(170, 200))

  c.input.update(
      size=(384, 288) if large else (256, 192),  # (height, width)
      scale_factor=0.35,
      rotation_factor=45.0,
      half_body_prob=0.3,
  )

  # Heatmaps 64x48 (96x72 at 384x288); sigma 2 (3) heatmap pixels, read
  # with the official quarter-pixel step (the base's).
  c.codec.sigma = 3.0 if large else 2.0

  c.model.update(
      name='hrnet', preset='w48' if w48 else 'w32',
      pretrained=config_lib.imagenet_checkpoint(
          'hrnet_w48-8ef0771d.pth' if w48 else 'hrnet_w32-36af842e.pth'))

  if 'official' in variants:
    config_lib.official_inference(c)

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
