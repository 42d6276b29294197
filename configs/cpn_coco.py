r"""Cascaded Pyramid Network on COCO 2017 person keypoints.

  python -m posejax.main --config=configs/cpn_coco.py --workdir=runs/cpn_r50_256x192 \
      --config.dataset.manual_dir=/data/coco   # or export COCO_DIR=/data/coco

Target: COCO AP with flip test. Chen et al., CVPR 2018: ResNet-50 256x192
69.7 on minival with their detector (55.3 human AP); the PyTorch port
(GengDavid/pytorch-cpn README, val2017): R50 256x192 69.2 with detections
(71.2 with ground-truth boxes), `:384x288` 72.2 (74.1), `:r101,384x288`
72.3 (74.0). This recipe evaluates on the HRNet detections of
config_lib.COCO_DETECTIONS (56.4 human AP), not CPN's. Not measured with
posejax yet.

The network is the port's (posejax/models/cpn.py); the training is the
port's: Adam 5e-4 halved every 6 epochs to epoch 36 of 40 (its
`lr_dec_epoch`), batch 32 per GPU (128 on 4 here), scale 0.7-1.3 (the port's 0.7-1.35),
rotation 45 degrees, no half-body augmentation; GlobalNet's four levels
supervised against Gaussians of the port's 15, 11, 9 and 7-pixel kernels
(sigma 2.6, 2.0, 1.7, 1.4 at 64x48 maps), RefineNet against the 7-pixel one
with hard keypoint mining of the 8 largest of 17 losses; `loss.stage_weights`
(1, 1, 1, 1, 2) make posejax's halved MSE the port's loss. Differences: the
port masks only the targets of unlabelled keypoints (its prediction is
trained toward zero there), posejax masks both (its targets peak at 255,
posejax's at 1 with the outputs divided by 255: the same training,
`cpn.CPN.output_scale`); its images are mean-
subtracted without scaling, posejax normalises with the ImageNet mean and
std; its weight decay of 1e-5 (Adam's L2) is left out; the boxes are
extended as the base's, not by the port's (0.1, 0.15). Variants: `r101`,
`384x288` (the port's kernels 23, 17, 13, 9 and batch 12 per GPU, 48
here), `smoke`.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib
from posejax.models import cpn

DEPTHS = ('r50', 'r101')
VARIANTS = (*DEPTHS, '384x288', 'smoke')
EXCLUSIVE = (DEPTHS,)  # one at most of each; the first is the default
IMAGENET = {'r50': 'resnet50-19c8e357.pth', 'r101': 'resnet101-5d3b4d8f.pth'}
SMOKE_INPUT = (64, 64)  # sides divisible by the backbone's stride of 32


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: one of 'r50' (default), 'r101'; '384x288'; 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/cpn_coco.py', VARIANTS, EXCLUSIVE)
  large = '384x288' in variants
  c = config_lib.base_config()

  # ceil(149,813 / 128) = 1,171 steps an epoch: 46,840 steps, halved at
  # epochs 6, 12, ..., 36; at 384x288 the port's 12 per GPU, 48 on 4.
  config_lib.coco_top_down(c, batch_size=48 if large else 128, epochs=40,
                           decay_epochs=tuple(range(6, 40, 6)))
  c.optim.update(learning_rate=5e-4, decay_factor=0.5)  # not scaled with GPUs

  c.input.update(
      size=(384, 288) if large else (256, 192),  # (height, width)
      scale_factor=0.3,  # 0.7-1.3 (the port's 0.7-1.35)
      rotation_factor=45.0,
  )

  # 64x48 maps (96x72), the quarter-pixel step; RefineNet's sigma decoded.
  c.codec.stage_sigmas = cpn.stage_sigmas(
      kernels=cpn.TARGET_KERNELS_384 if large else cpn.TARGET_KERNELS)
  c.codec.sigma = c.codec.stage_sigmas[-1]
  c.loss.update(stage_weights=(1.0, 1.0, 1.0, 1.0, 2.0), ohkm_topk=8,
                ohkm_stages=(-1,))

  depth = config_lib.choose(variants, DEPTHS)
  c.model.update(name='cpn', preset=depth,
                 pretrained=config_lib.imagenet_checkpoint(IMAGENET[depth]))

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
