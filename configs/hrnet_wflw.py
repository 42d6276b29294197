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
As the official network, the backbone starts from ImageNet:
$POSEJAX_PRETRAINED_DIR/hrnetv2_w18_imagenet_pretrained.pth (the directory
defaults to ~/posejax_pretrained), linked from the README of
github.com/HRNet/HRNet-Facial-Landmark-Detection; .pth or converted by
`python -m posejax.pretrained`; --config.model.pretrained takes another path,
'' trains from scratch. Not measured with posejax yet.

`smoke` (e.g. `:300w,smoke`) runs the recipe's whole path quickly: the same
structure at a few channels, a 32x32 input, batches of 2, a few steps
(config_lib.smoke); its metrics mean nothing.
"""

from __future__ import annotations

import os

import ml_collections

from posejax import config_lib

# Training faces per dataset: WFLW train, 300W train (AFW + HELEN + LFPW
# train sets).
TRAIN_FACES = {'wflw': 7_500, 'ibug_300w': 3_148}
DATASETS = ('wflw', '300w')
SMOKE_INPUT = (32, 32)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: 'wflw' (default) or '300w'; 'smoke'."""
  variants = config_lib.parse_variants(
      arg, 'configs/hrnet_wflw.py', (*DATASETS, 'smoke'), exclusive=[DATASETS])
  ibug = config_lib.choose(variants, DATASETS, 'wflw') == '300w'
  dataset = 'ibug_300w' if ibug else 'wflw'
  c = config_lib.base_config()

  c.dataset.update(
      name=dataset,
      manual_dir=os.environ.get('IBUG_300W_DIR' if ibug else 'WFLW_DIR', ''),
      eval_split='test_full' if ibug else 'test',
  )

  c.input.update(
      size=(256, 256),
      rotation_factor=15.0,  # clipped at +-30 degrees
      shuffle_buffer=8192,
  )

  c.codec.update(sigma=1.0 if ibug else 1.5)  # 64x64 maps

  c.model.update(name='hrnet', preset='v2_w18',
                 pretrained=config_lib.imagenet_checkpoint(
                     'hrnetv2_w18_imagenet_pretrained.pth'))

  # 60 epochs with x0.1 at epochs 30 and 50: WFLW 469 steps an epoch, so
  # 28,140 steps with decays at 14,070 and 23,450; 300W 197, so 11,820 with
  # decays at 5,910 and 9,850.
  batch = 16
  def epochs(n):
    return config_lib.steps_for_epochs(n, TRAIN_FACES[dataset], batch)

  c.optim.update(
      learning_rate=1e-4,
      decay_steps=(epochs(30), epochs(50)),
  )

  c.train.update(
      global_batch_size=batch,
      num_steps=epochs(60),
      checkpoint_every_steps=epochs(1),
      eval_every_steps=epochs(10),
  )

  c.eval.update(
      metric='nme',
      flip_test=False,  # TEST.FLIP_TEST: false
  )

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
