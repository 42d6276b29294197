r"""SimpleBaselines (ResNet + deconvolutions) on COCO 2017 person keypoints.

  python -m posejax.main --config=configs/simple_baseline_coco.py \
      --workdir=runs/simple_baseline_r50_256x192 --config.dataset.manual_dir=/data/coco

manual_dir as for configs/hrnet_coco.py: COCO 2017 (annotations/,
train2017/, val2017/) and
person_detection_results/COCO_val2017_detections_AP_H_56_person.json.

Published result it targets: 70.4 AP on COCO val2017 for ResNet-50 with
three 256-channel deconvolutions at 256x192, detector boxes (AP 56.4) and
flip test (Xiao et al., ECCV 2018, Table 2; README of
github.com/microsoft/human-pose-estimation.pytorch,
256x192_pose_resnet_50_d256d256d256). Variants: ':r101' (71.4 AP) and
':r152' (72.0 AP), same recipe.

Hardware assumed: the official runs used 4 GPUs with 32 crops each, here one
global batch of 128 over the mesh. Not measured with posejax yet. As the
official runs, the backbone starts from torchvision's ImageNet ResNet:
$POSEJAX_PRETRAINED_DIR/resnet50-19c8e357.pth (resnet101-5d3b4d8f.pth,
resnet152-b121ed2d.pth; the directory defaults to ~/posejax_pretrained),
from download.pytorch.org/models/ (linked from the official README), .pth or
converted by `python -m posejax.pretrained`; --config.model.pretrained takes
another path, '' trains from scratch. The official checkpoints evaluate
with the `official` variant (e.g. `:r101,official`) after
`python -m posejax.import_torch` with it.

Evaluation is the official top-down protocol of configs/hrnet_coco.py
(detections, rescoring, OKS-NMS at 0.9, pycocotools), with flip test; the
official TEST.SHIFT_HEATMAP is off for the reason given there, and on in the
`official` variant, which reproduces the official inference (crop, heatmap
grid, post-processing; `config_lib.official_inference`).

`smoke` (e.g. `:r101,smoke`) runs the recipe's whole path quickly: the same
structure at a few channels, a 64x64 input, batches of 2, a few steps
(config_lib.smoke); its metrics mean nothing.
"""

from __future__ import annotations

import os

import ml_collections

from posejax import config_lib

DETECTIONS = 'person_detection_results/COCO_val2017_detections_AP_H_56_person.json'
DEPTHS = ('r50', 'r101', 'r152')
# torchvision's ImageNet ResNets, as the official code names them.
IMAGENET = {'r50': 'resnet50-19c8e357.pth', 'r101': 'resnet101-5d3b4d8f.pth',
            'r152': 'resnet152-b121ed2d.pth'}
SMOKE_INPUT = (64, 64)  # sides divisible by the backbone's stride of 32


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: one of 'r50' (default), 'r101', 'r152'; 'official'; 'smoke'.

  'official' (comma-joined, e.g. 'r101,official') reads the heatmaps of
  networks trained by the official code (see configs/hrnet_coco.py).
  """
  variants = config_lib.parse_variants(
      arg, 'configs/simple_baseline_coco.py', (*DEPTHS, 'official', 'smoke'),
      exclusive=[DEPTHS])
  c = config_lib.base_config()

  c.dataset.update(
      name='coco_keypoints',
      config='2017',
      manual_dir=os.environ.get('COCO_DIR', ''),
  )

  c.input.update(
      size=(256, 192),  # (height, width)
      scale_factor=0.3,
      rotation_factor=40.0,
      rotation_prob=0.6,  # as the official loader
      half_body_prob=0.0,  # half-body augmentation came later, with HRNet
  )

  # 64x48 maps, sigma 2, the quarter-pixel step (the base's codec).

  # Three 4x4 deconvolutions of 256 channels, 1x1 final conv.
  depth = config_lib.choose(variants, DEPTHS, 'r50')
  c.model.update(name='simple_baseline', preset=depth,
                 pretrained=config_lib.imagenet_checkpoint(IMAGENET[depth]))

  # 140 epochs, x0.1 at epochs 90 and 120: ceil(149,813 / 128) = 1,171
  # steps an epoch, so 163,940 steps with decays at 105,390 and 140,520.
  batch = 128  # 32 per GPU x 4 GPUs
  def epochs(n):
    return config_lib.steps_for_epochs(n, config_lib.COCO_TRAIN_INSTANCES, batch)

  c.optim.update(
      learning_rate=1e-3,
      decay_steps=(epochs(90), epochs(120)),
      weight_decay=0.0,  # the official WD only reaches SGD
  )

  c.train.update(
      global_batch_size=batch,
      num_steps=epochs(140),
      checkpoint_every_steps=epochs(1),
      eval_every_steps=epochs(10),
  )

  c.eval.update(
      batch_size=batch,
      metric='coco',
      boxes=DETECTIONS,  # relative to dataset.manual_dir
  )

  if 'official' in variants:
    config_lib.official_inference(c)

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
