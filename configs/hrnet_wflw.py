r"""HRNetV2-W18 face landmarks on WFLW (98 points) or 300W (68 points).

  python -m posejax.main --config=configs/hrnet_wflw.py --workdir=runs/hrnetv2_wflw \
      --config.dataset.manual_dir=/data/wflw        # or export WFLW_DIR=...
  python -m posejax.main --config=configs/hrnet_wflw.py:300w --workdir=runs/hrnetv2_300w \
      --config.dataset.manual_dir=/data/300w        # or export IBUG_300W_DIR=...

manual_dir layouts: see posejax/data/face_landmarks.py.

Published results it targets (github.com/HRNet/HRNet-Facial-Landmark-Detection
README; Sun et al., "High-Resolution Representations for Labeling Pixels and
Regions", 2019), NME in percent, inter-ocular (outer eye corners):

  WFLW test (default)   4.60; subsets pose 7.86, expression 4.78,
                        illumination 4.57, make-up 4.26, occlusion 5.42,
                        blur 5.36 (`NME/<attribute>` in metrics.json)
  300W full (:300w)     3.34; common 2.91, challenge 5.11 (the paper: 3.32,
                        2.87, 5.15). metrics.json has the split it was run
                        on; --config.dataset.eval_split=test_common or
                        test_challenge scores the subsets.

metrics.json also has FR@0.1 (percent of faces with NME > 10%) and AUC@0.1.

Recipe (the official experiments/{wflw,300w}/face_alignment_*_hrnet_w18.yaml):
HRNetV2-W18 (concat head), 256x256 input, 64x64 heatmaps, sigma 1.5 (WFLW)
or 1.0 (300W), Adam 1e-4, 60 epochs with x0.1 at epochs 30 and 50, batch 16
on one GPU (the README: one P40), face box enlarged 1.25x, scale and rotation
augmentation (theirs uniform in [0.75, 1.25] and +-30 degrees on 60% of the
faces; here clipped normals with the same ranges), flip; no flip test.
The official network starts from ImageNet-pretrained HRNetV2-W18 weights;
posejax has no ImageNet import and trains from scratch. Not measured with
posejax yet.
"""

from __future__ import annotations

import os

import ml_collections

# Training faces per dataset: WFLW train, 300W train (AFW + HELEN + LFPW
# train sets).
TRAIN_FACES = {'wflw': 7_500, 'ibug_300w': 3_148}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' (WFLW) or '300w'."""
  if arg not in (None, '', 'wflw', '300w'):
    raise ValueError(f"Unknown variant {arg!r} of configs/hrnet_wflw.py; "
                     "known: 'wflw', '300w'.")
  ibug = arg == '300w'
  dataset = 'ibug_300w' if ibug else 'wflw'
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict(dict(
      name=dataset,
      config='default',
      data_dir=os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'),
      manual_dir=os.environ.get('IBUG_300W_DIR' if ibug else 'WFLW_DIR', ''),
      keypoints=dataset,
      train_split='train',
      eval_split='test_full' if ibug else 'test',
  ))

  c.input = ml_collections.ConfigDict(dict(
      size=(256, 256),
      padding=1.25,
      scale_factor=0.25,
      rotation_factor=15.0,  # clipped at +-30 degrees
      rotation_prob=0.6,
      flip=True,
      half_body_prob=0.0,
      half_body_min_keypoints=8,
      shuffle_buffer=8192,
      prefetch=2,
  ))

  c.codec = ml_collections.ConfigDict(dict(
      name='heatmap', stride=4, sigma=1.0 if ibug else 1.5, refine='quarter'))

  c.model = ml_collections.ConfigDict(dict(
      name='hrnet', preset='v2_w18', dtype='float32'))

  c.loss = ml_collections.ConfigDict(dict(name='mse'))

  # ceil(faces / 16) steps an epoch (the official loader keeps the last short
  # batch): WFLW 469, so 28,140 steps with decays at 14,070 and 23,450;
  # 300W 197, so 11,820 with decays at 5,910 and 9,850.
  batch = 16
  steps_per_epoch = -(-TRAIN_FACES[dataset] // batch)
  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-4,
      warmup_steps=0,
      schedule='step',
      decay_steps=(30 * steps_per_epoch, 50 * steps_per_epoch),
      decay_factor=0.1,
      weight_decay=0.0,
      grad_clip_norm=0.0,
  ))

  c.train = ml_collections.ConfigDict(dict(
      global_batch_size=batch,
      num_steps=60 * steps_per_epoch,
      log_every_steps=100,
      checkpoint_every_steps=steps_per_epoch,
      keep_checkpoints=2,
      eval_every_steps=10 * steps_per_epoch,
  ))

  c.eval = ml_collections.ConfigDict(dict(
      batch_size=64,
      metric='nme',
      boxes='ground_truth',
      box_score_threshold=0.0,
      oks_nms_threshold=0.9,
      flip_test=False,  # TEST.FLIP_TEST: false
      flip_shift=False,
      num_images_to_draw=32,
  ))

  c.mesh = ml_collections.ConfigDict(dict(data=-1))
  return c
