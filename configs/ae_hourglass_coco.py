r"""The stacked hourglass with associative embedding on COCO: bottom-up.

  python -m posejax.main --config=configs/ae_hourglass_coco.py --workdir=runs/ae_hourglass4_512 \
      --config.dataset.manual_dir=/data/coco   # or export COCO_DIR=/data/coco

Target: COCO test-dev AP 56.6 single-scale, 63.0 multi-scale, 65.5 with
refinement by a single-person network (Newell et al., "Associative
Embedding", NeurIPS 2017, Table 1); not measured with posejax yet, and
posejax has no test-dev submission path (val2017 is scored).

princeton-vl/pose-ae-train's task/pose.py: 4 stacks of 256 channels (+128
per level, no BatchNorm) at 512x512, outputs at 128x128 on every stack,
each supervised; pull and push 1e-3, detection (heatmap) loss 1; up to 30
people; Adam at 2e-4, batch 32, the rate down to 1e-5 (x0.05) after 200,000
iterations (its training runs until stopped: 250,000 steps here).
Augmentation and decoding are the shared bottom-up ones
(posejax/data/pipeline/whole_image.py, posejax/codecs/embedding.py): the
original's own augmentation (rotation, scale, flip in its dp.py) differs in
its ranges; decoding reads the last stack, as its test does, with flip
test. From scratch: the original has no ImageNet start. `smoke` runs the
whole path in a minute or two.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib

VARIANTS = ('smoke',)
SMOKE_INPUT = (64, 64)  # (height, width); the smoke hourglass divides by 16


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' (4 stacks at 512), 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/ae_hourglass_coco.py', VARIANTS)
  c = config_lib.base_config()
  config_lib.use_dataset(c, 'coco_keypoints', config='2017')

  c.input.update(size=(512, 512), max_people=30, flip=True)
  c.codec.update(name='associative_embedding', stride=4, sigma=2.0,
                 pull_weight=1e-3, push_weight=1e-3, decode_outputs=1)
  c.model.update(name='ae_hourglass', preset='ae4')

  c.optim.update(learning_rate=2e-4, weight_decay=0.0, schedule='step',
                 decay_steps=(200_000,), decay_factor=0.05, warmup_steps=0)
  c.train.update(global_batch_size=32, num_steps=250_000,
                 checkpoint_every_steps=5_000, eval_every_steps=25_000)
  c.eval.update(batch_size=8, metric='coco', flip_test=True, num_images_to_draw=8)

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
