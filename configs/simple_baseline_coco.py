r"""SimpleBaselines (ResNet + deconvolutions) on COCO 2017 person keypoints.

  python -m posejax.main --config=configs/simple_baseline_coco.py \
      --workdir=runs/simple_baseline_r50_256x192 --config.dataset.manual_dir=/data/coco

Target: COCO val2017 AP at 256x192 with the official detections and flip
test (Xiao et al., ECCV 2018, Table 2; human-pose-estimation.pytorch
README): ResNet-50 70.4 (default), `:r101` 71.4, `:r152` 72.0. Not measured
with posejax yet.

Beyond config_lib.coco_top_down: the ResNet from torchvision's ImageNet
weights with three 256-channel deconvolutions, scale 0.3, rotation 40
degrees, no half-body augmentation, 140 epochs (x0.1 at 90 and 120), batch
128. `official` (e.g. `:r101,official`) evaluates the official checkpoints,
`smoke` runs the whole path in a minute or two; more: configs/README.md.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib

DEPTHS = ('r50', 'r101', 'r152')
VARIANTS = (*DEPTHS, 'official', 'smoke')
EXCLUSIVE = (DEPTHS,)  # one at most of each; the first is the default
# torchvision's ImageNet ResNets, as the official code names them.
IMAGENET = {'r50': 'resnet50-19c8e357.pth', 'r101': 'resnet101-5d3b4d8f.pth',
            'r152': 'resnet152-b121ed2d.pth'}
SMOKE_INPUT = (64, 64)  # sides divisible by the backbone's stride of 32


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: one of 'r50' (default), 'r101', 'r152'; 'official'; 'smoke'."""
  variants = config_lib.parse_variants(
      arg, 'configs/simple_baseline_coco.py', VARIANTS, EXCLUSIVE)
  c = config_lib.base_config()

  # ceil(149,813 / 128) = 1,171 steps an epoch, so 163,940 steps with decays
  # at 105,390 and 140,520.
  config_lib.coco_top_down(c, batch_size=128,  # 32 per GPU x 4 GPUs
                           epochs=140, decay_epochs=(90, 120))

  c.input.update(
      size=(256, 192),  # (height, width)
      scale_factor=0.3,
      rotation_factor=40.0,
      # No half-body augmentation (the base's 0): it came later, with HRNet.
  )

  # 64x48 maps, sigma 2, the quarter-pixel step (the base's codec).

  # Three 4x4 deconvolutions of 256 channels, 1x1 final conv.
  depth = config_lib.choose(variants, DEPTHS)
  c.model.update(name='simple_baseline', preset=depth,
                 pretrained=config_lib.imagenet_checkpoint(IMAGENET[depth]))

  if 'official' in variants:
    config_lib.official_inference(c)

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
