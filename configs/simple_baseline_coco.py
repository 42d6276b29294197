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
global batch of 128 over the mesh. Not measured with posejax yet. The
official backbone starts from ImageNet-pretrained ResNet weights; posejax has
no ImageNet import and trains from scratch, so expect less than the published
AP. The official checkpoints evaluate with the `official` variant (e.g.
`:r101,official`) after `python -m posejax.import_torch` with it.

Evaluation is the official top-down protocol of configs/hrnet_coco.py
(detections, rescoring, OKS-NMS at 0.9, pycocotools), with flip test; the
official TEST.SHIFT_HEATMAP is off for the reason given there, and on in the
`official` variant, which also reads the heatmaps on the official grid.
"""

from __future__ import annotations

import os

import ml_collections

# COCO train2017 person instances with num_keypoints > 0.
TRAIN_INSTANCES = 149_813
DETECTIONS = 'person_detection_results/COCO_val2017_detections_AP_H_56_person.json'


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' or 'r50' (ResNet-50), 'r101', 'r152'; and 'official'.

  'official' (comma-joined, e.g. 'r101,official') reads the heatmaps of
  networks trained by the official code (see configs/hrnet_coco.py).
  """
  variants = set(filter(None, (arg or '').split(',')))
  depths = variants & {'r50', 'r101', 'r152'}
  unknown = variants - {'r50', 'r101', 'r152', 'official'}
  if unknown or len(depths) > 1:
    raise ValueError(f'Unknown variant {arg!r} of configs/simple_baseline_coco.py; '
                     "known: one of 'r50', 'r101', 'r152', and 'official'.")
  preset = depths.pop() if depths else 'r50'
  official = 'official' in variants

  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict(dict(
      name='coco_keypoints',
      config='2017',
      data_dir=os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'),
      manual_dir=os.environ.get('COCO_DIR', ''),
      keypoints='coco',
      train_split='train',
      eval_split='validation',
  ))

  c.input = ml_collections.ConfigDict(dict(
      size=(256, 192),  # (height, width)
      padding=1.25,
      scale_factor=0.3,
      rotation_factor=40.0,
      rotation_prob=0.6,  # as the official loader
      flip=True,
      half_body_prob=0.0,  # half-body augmentation came later, with HRNet
      half_body_min_keypoints=8,
      shuffle_buffer=16384,
      prefetch=2,
  ))

  c.codec = ml_collections.ConfigDict(dict(
      name='heatmap', stride=4, sigma=2.0, refine='quarter',  # 64x48 maps
      grid='official' if official else 'centred'))

  # Three 4x4 deconvolutions of 256 channels, 1x1 final conv.
  c.model = ml_collections.ConfigDict(dict(
      name='simple_baseline', preset=preset, dtype='float32'))

  c.loss = ml_collections.ConfigDict(dict(name='mse'))

  # 140 epochs, x0.1 at epochs 90 and 120: ceil(149,813 / 128) = 1,171
  # steps an epoch (the official loader keeps the last short batch), so
  # 163,940 steps with decays at 105,390 and 140,520.
  batch = 128  # 32 per GPU x 4 GPUs
  steps_per_epoch = -(-TRAIN_INSTANCES // batch)
  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-3,
      warmup_steps=0,
      schedule='step',
      decay_steps=(90 * steps_per_epoch, 120 * steps_per_epoch),
      decay_factor=0.1,
      weight_decay=0.0,  # the official WD only reaches SGD
      grad_clip_norm=0.0,
  ))

  c.train = ml_collections.ConfigDict(dict(
      global_batch_size=batch,
      num_steps=140 * steps_per_epoch,
      log_every_steps=100,
      checkpoint_every_steps=steps_per_epoch,
      keep_checkpoints=2,
      eval_every_steps=10 * steps_per_epoch,
  ))

  c.eval = ml_collections.ConfigDict(dict(
      batch_size=batch,
      metric='coco',
      boxes=DETECTIONS,  # relative to dataset.manual_dir
      box_score_threshold=0.0,
      oks_nms_threshold=0.9,
      flip_test=True,
      flip_shift=official,  # see configs/hrnet_coco.py
      num_images_to_draw=32,
  ))

  c.mesh = ml_collections.ConfigDict(dict(data=-1))
  return c
