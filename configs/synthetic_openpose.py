r"""OpenPose on the generated figures, bottom-up by part affinity fields.

  python -m posejax.main --config=configs/synthetic_openpose.py --workdir=/tmp/posejax_openpose

The data and budget of configs/synthetic_bottom_up.py (5,000 train / 500
val figures, one to three per 256x256 image, shown whole at 128x128, no
boxes, about 8 minutes on a 2-core CPU) with OpenPose in place of
HigherHRNet: a narrow two-branch network of two stages at stride 4 (the
CMU model's stride is 8; at this input its maps would be 16x16), with
BatchNorm (which the CMU model has not), COCO-18
confidence maps and 19 limb fields, decoded and assembled as the PyTorch
port of OpenPose does, evaluated by OKS AP against every figure of the val
split (flip test). Fewer steps than the associative-embedding variant
(1,000 against 2,000): a step of this network costs more on a CPU, and the
two share a time budget.

Measured (2-core Intel Xeon, jaxlib 0.10.2): AP 0.1149 (AP50 0.396) in 8 min
15 s, beside 0.2415 for the associative-embedding variant in 8 min 06 s;
`--config.train.num_steps=1500`: AP 0.1998 (AP50 0.572) in 11 min 52 s.
What limits it: docs/results.md ("OpenPose on the synthetic data").
`smoke`: tiny data, a 64x64 input, 6 steps.
"""

import ml_collections

from posejax import config_lib

VARIANTS = ('smoke',)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/synthetic_openpose.py', VARIANTS)
  c = config_lib.base_config()
  c.dataset.update(name='coco_keypoints', config='synthetic')

  # Gaussians of 2 map pixels (8 input pixels, as the associative-embedding
  # variant's first output) and limb fields a map pixel (4 input pixels)
  # wide each side, for figures of 40-75 pixels.
  c.codec.update(name='part_affinity', stride=4, sigma=2.0, limb_width=1.0)
  c.input.update(size=(128, 128), whole_image_scale=(0.9, 1.1),
                 whole_image_rotation=0.0, whole_image_translate=0.05,
                 shuffle_buffer=8192, cache_decoded_images=True)
  # BatchNorm after every hidden convolution (the CMU model has none):
  # without it the loss at step 400 was 0.0140 against 0.0107 and no figure
  # was found; 5x5 kernels in the later stages (7x7 in the CMU model).
  c.model.update(name='openpose', stride=4, num_stages=2, vgg_widths=(8, 16, 32, 48),
                 cpm_widths=(48, 32), stage_features=32, stage1_hidden=48,
                 kernel_size=5, batch_norm=True, input_normalization='imagenet')
  c.optim.update(learning_rate=2e-3, warmup_steps=50, schedule='cosine')
  c.train.update(global_batch_size=16, num_steps=1000, checkpoint_every_steps=500)
  c.eval.update(batch_size=16, num_images_to_draw=8)

  if 'smoke' in variants:
    c.dataset.synthetic = dict(num_train=96, num_val=24, seed=0, image_size=(128, 128))
    c.input.update(size=(64, 64), shuffle_buffer=256)
    c.model.update(vgg_widths=(8, 8, 8, 8), cpm_widths=(8, 8), stage_features=8,
                   stage1_hidden=8, kernel_size=3)
    c.optim.warmup_steps = 2
    c.train.update(global_batch_size=8, num_steps=6, log_every_steps=2,
                   checkpoint_every_steps=3, eval_every_steps=0)
    c.eval.update(batch_size=8, num_images_to_draw=8)
  return c
