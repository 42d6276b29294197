r"""Multi-Stage Pose Network on COCO 2017 person keypoints.

  python -m posejax.main --config=configs/mspn_coco.py --workdir=runs/mspn_4stg_256x192 \
      --config.dataset.manual_dir=/data/coco   # or export COCO_DIR=/data/coco

Target: COCO val2017 AP with flip test and the official detections
(megvii-research/MSPN README; Li et al., 2019): 4-stage 256x192 75.9
(default), `:1stg` 71.5, `:2stg` 74.5, `:3stg` 75.2, `:384x288` 76.9 (76.1
on test-dev). This recipe evaluates on the HRNet detections of
config_lib.COCO_DETECTIONS, not MSPN's. Not measured with posejax yet.

The network is the official (posejax/models/mspn.py), its first stage's
encoder from torchvision's ImageNet ResNet-50; the training is the
official config's (exps/mspn.2xstg.coco): Adam at 5e-4 per GPU of 32
images (4 GPUs here: batch 128, 2e-3), linear warm-up over 2,400 steps,
then linear decay to zero at 96,000; scale 0.75-1.25, rotation 45 degrees
on half the crops, half-body 0.3, flip; the coarse-to-fine supervision: each
stage's four outputs from the coarsest against Gaussians of 15, 11, 9 and
7-pixel kernels (sigma 2.6, 2.0, 1.7, 1.4 at 64x48 maps), the last stage's
one kernel finer (11, 9, 7, 5), the three coarser outputs of a stage at a
quarter and each stage's finest with hard keypoint mining of 8 of 17
(`mspn.stage_sigmas`, `stage_weights`, `mined_outputs`). Differences: the
official warm-up starts at a tenth of the rate (posejax's at zero), its
weight decay of 1e-5 (Adam's L2) is left out, and it masks only the
targets of unlabelled keypoints outside the mined outputs (its targets
peak at 255, posejax's at 1 with the outputs divided by 255: the same
training, `mspn.MSPN.output_scale`).
Variants: `1stg`, `2stg`, `3stg`, `384x288`, `smoke`.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib
from posejax.models import mspn

STAGES = ('4stg', '1stg', '2stg', '3stg')
VARIANTS = (*STAGES, '384x288', 'smoke')
EXCLUSIVE = (STAGES,)  # one at most of each; the first is the default
SMOKE_INPUT = (64, 64)  # sides divisible by the encoder's stride of 32


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: one of '4stg' (default), '1stg', '2stg', '3stg'; '384x288'; 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/mspn_coco.py', VARIANTS, EXCLUSIVE)
  preset = config_lib.choose(variants, STAGES)
  num_stages = mspn.MSPN_PRESETS[preset]['num_stages']
  large = '384x288' in variants
  c = config_lib.base_config()

  # 96,000 steps of 128 (82 epochs of 149,813 instances).
  config_lib.coco_top_down(c, batch_size=128, epochs=1, decay_epochs=())
  c.optim.update(learning_rate=2e-3, warmup_steps=2400, schedule='linear')
  c.train.update(num_steps=96_000, eval_every_steps=11_710)

  c.input.update(
      size=(384, 288) if large else (256, 192),  # (height, width)
      scale_factor=0.25,
      rotation_factor=45.0,
      rotation_prob=0.5,
      half_body_prob=0.3,
  )

  # 64x48 maps, the quarter-pixel step. The official code has no 384x288
  # config: its 96x72 maps get the sigmas x1.5.
  finest = 1.5 * mspn.stage_sigmas(1)[-1] if large else None
  c.codec.stage_sigmas = mspn.stage_sigmas(num_stages, finest)
  c.codec.sigma = c.codec.stage_sigmas[-1]
  c.loss.update(stage_weights=mspn.stage_weights(num_stages), ohkm_topk=8,
                ohkm_stages=mspn.mined_outputs(num_stages))

  c.model.update(name='mspn', preset=preset,
                 pretrained=config_lib.imagenet_checkpoint('resnet50-19c8e357.pth'))

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
