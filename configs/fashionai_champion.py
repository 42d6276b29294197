r"""The FashionAI 2018 winner's approach on FashionAI garment keypoints.

  python -m posejax.main --config=configs/fashionai_champion.py --workdir=runs/champion \
      --config.dataset.manual_dir=/data/fashionai   # or export FASHIONAI_DIR=...
  python -m posejax.eval --config=configs/fashionai_champion.py --workdir=runs/champion

manual_dir holds the Tianchi training release (Annotations/train.csv,
Images/<category>/*.jpg; posejax/data/fashionai_keypoints.py). All five
garment categories train one network on the 24-point layout; the score is
the challenge's normalised error on the held-out 10% of the training release
(`NE` and `NE/<category>` in metrics.json, in percent).

Published: 3.30% NE on the challenge's test set for the winning entry (an
ensemble, with a garment detector in front); 4.11% for the ablation's
starting point, a ResNet-50 encoder and one stack. What differs here:

- No detector: no detector weights can be downloaded, so the crop is the
  whole image (FashionAI images hold one garment, mostly centred) or the
  ground-truth keypoints' box where a user supplies it; a detector's tighter
  crop is worth some of the gap.
- The network follows the write-up's description, whose layer table is not
  published (posejax/models/asymmetric_hourglass.py says where it had to
  choose): 11.5M parameters and 27.8 GFLOPs for 3 stacks at 256x256 (10.2M,
  23.1 GFLOPs for one), against 49M and 7.86 GFLOPs for their one-stack
  network; the resolution the winners trained at is not stated, this recipe
  uses 256x256 as the CPM recipe does.
- The test set's labels were never released: scores are on held-out
  training images, not comparable to the leaderboard one to one.

Recipe: the asymmetric dilated hourglass (`r50_3stack`: ResNet-50 encoder at
1/8 with dilation, light decoder, three supervised stacks), the encoder's
conv1 to layer3 from torchvision's ImageNet ResNet-50
($POSEJAX_PRETRAINED_DIR/resnet50-19c8e357.pth, default directory
~/posejax_pretrained; --config.model.pretrained='' trains from scratch);
offset-voting targets (disks of radius 3 heatmap pixels at 64x64, offsets
with a Huber loss, Hough voting); online hard keypoint mining across the
batch (the 8 x batch hardest keypoint losses); flip and rotation
augmentation; Adam 1e-3 with step decay; early stopping on the validation
loss as in the CPM recipe. Not measured with posejax on real data yet.

Variants: `1stack` (the ablation's starting point), `heatmap` (Gaussian
heatmaps with DARK decoding instead of offset voting), `smoke` (e.g.
`:smoke`): the recipe's whole path at a few channels, 64x64 input, a few
steps; its metrics mean nothing.
"""

from __future__ import annotations

import os

import ml_collections

from posejax import config_lib

SMOKE_INPUT = (64, 64)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants = config_lib.parse_variants(
      arg, 'configs/fashionai_champion.py', ('1stack', 'heatmap', 'smoke'))
  c = config_lib.base_config()

  c.dataset.update(
      name='fashionai_keypoints',
      config='all',
      manual_dir=os.environ.get('FASHIONAI_DIR', ''),
  )

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
