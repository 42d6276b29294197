r"""HigherHRNet on COCO 2017 person keypoints: bottom-up, no person detector.

  python -m posejax.main --config=configs/higherhrnet_coco.py --workdir=runs/higherhrnet_w32_512 \
      --config.dataset.manual_dir=/data/coco   # or export COCO_DIR=/data/coco

Target: COCO val2017 AP with flip test, single scale (Cheng et al., CVPR
2020, Table 2; HigherHRNet-Human-Pose-Estimation README): HigherHRNet-W32
at 512 67.1 (default), `:w48` at 640 69.9. Not measured with posejax yet.
The official test scales each image's shorter side to the input size;
posejax shows the whole image in the square input (posejax/data/pipeline/
whole_image.py), which sees large images at a lower resolution: expect the
figure somewhat lower until a matching evaluation is measured.

The official experiments/coco/higher_hrnet/w32_512_adam_lr1e-3.yaml (and
w48_640): HRNet from ImageNet weights with the deconvolution head (heatmaps
at 1/4 with tags, heatmaps at 1/2); sigma 2 at both; pull and push 1e-3;
up to 30 people; scale 0.75-1.5 of the shorter side, rotation 30 degrees,
translation 40 in 200-pixel units (0.2 of the side), flip 0.5; Adam at 1e-3
without weight decay, 300 epochs, x0.1 at 200 and 260, 12 images per GPU
(10 for W48) on 8 devices; decoding: both outputs' heatmaps averaged at the
input's resolution, NMS 5x5, detection threshold 0.1, tag threshold 1,
adjust and refine. `smoke` runs the whole path in a minute or two.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib

VARIANTS = ('w48', 'smoke')
SMOKE_INPUT = (64, 64)  # (height, width)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' (W32 at 512), 'w48' (at 640), 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/higherhrnet_coco.py', VARIANTS)
  w48 = 'w48' in variants
  c = config_lib.base_config()
  config_lib.use_dataset(c, 'coco_keypoints', config='2017')

  side = 640 if w48 else 512
  c.input.update(size=(side, side), max_people=30, whole_image_scale=(0.75, 1.5),
                 whole_image_rotation=30.0, whole_image_translate=0.2, flip=True)
  c.codec.update(name='associative_embedding', stride=4, sigma=2.0,
                 pull_weight=1e-3, push_weight=1e-3, decode_outputs=2,
                 project_to_input=True, nms_kernel=5, detection_threshold=0.1,
                 tag_threshold=1.0, adjust=True, refine_missing=True)
  c.model.update(
      name='hrnet', preset='higher_w48' if w48 else 'higher_w32',
      pretrained=config_lib.imagenet_checkpoint(
          'hrnet_w48-8ef0771d.pth' if w48 else 'hrnet_w32-36af842e.pth'))

  batch = 80 if w48 else 96  # 10 or 12 per device x 8
  c.optim.update(learning_rate=1e-3, weight_decay=0.0, schedule='step',
                 decay_factor=0.1, warmup_steps=0)
  config_lib.epoch_schedule(c, config_lib.COCO_TRAIN_IMAGES, batch, epochs=300,
                            decay_epochs=(200, 260))
  c.eval.update(batch_size=8, metric='coco', flip_test=True, num_images_to_draw=8)

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
