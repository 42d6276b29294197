r"""HRNetV2-W18 face landmarks on WFLW (98 points) or 300W (68 points).

  python -m posejax.main --config=configs/hrnet_wflw.py --workdir=runs/hrnetv2_wflw \
      --config.dataset.manual_dir=/data/wflw        # or export WFLW_DIR=...
  python -m posejax.main --config=configs/hrnet_wflw.py:300w --workdir=runs/hrnetv2_300w \
      --config.dataset.manual_dir=/data/300w        # or export IBUG_300W_DIR=...

Target: inter-ocular NME of github.com/HRNet/HRNet-Facial-Landmark-Detection
(README; Sun et al., 2019): WFLW test 4.60 (default), 300W full 3.34
(`:300w`). Not measured with posejax yet.

Beyond the base: the official experiments/{wflw,300w} settings, HRNetV2-W18
from ImageNet weights, 256x256 input, sigma 1.5 (WFLW) or 1.0 (300W), Adam
1e-4 for 60 epochs (x0.1 at 30 and 50), batch 16, no flip test. `smoke` runs
the whole path in a minute or two; subsets, data, reasons: configs/README.md.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib

# Training faces per dataset: WFLW train, 300W train (AFW + HELEN + LFPW
# train sets).
TRAIN_FACES = {'wflw': 7_500, 'ibug_300w': 3_148}
DATASETS = ('wflw', '300w')
VARIANTS = (*DATASETS, 'smoke')
EXCLUSIVE = (DATASETS,)  # one at most of each; the first is the default
SMOKE_INPUT = (32, 32)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: 'wflw' (default) or '300w'; 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/hrnet_wflw.py', VARIANTS,
                                       EXCLUSIVE)
  ibug = config_lib.choose(variants, DATASETS) == '300w'
  dataset = 'ibug_300w' if ibug else 'wflw'
  c = config_lib.base_config()

  config_lib.use_dataset(c, dataset, eval_split='test_full' if ibug else 'test')

  c.input.update(
      size=(256, 256),
      rotation_factor=15.0,  # clipped at +-30 degrees
      shuffle_buffer=8192,
  )

  c.codec.update(sigma=1.0 if ibug else 1.5)  # 64x64 maps

  c.model.update(name='hrnet', preset='v2_w18',
                 pretrained=config_lib.imagenet_checkpoint(
                     'hrnetv2_w18_imagenet_pretrained.pth'))

  c.optim.learning_rate = 1e-4
  # 60 epochs with x0.1 at epochs 30 and 50: WFLW 469 steps an epoch, so
  # 28,140 steps with decays at 14,070 and 23,450; 300W 197, so 11,820 with
  # decays at 5,910 and 9,850.
  config_lib.epoch_schedule(c, TRAIN_FACES[dataset], batch_size=16, epochs=60,
                            decay_epochs=(30, 50))

  c.eval.update(
      metric='nme',
      flip_test=False,  # TEST.FLIP_TEST: false
  )

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
