r"""OpenPose on COCO 2017 person keypoints: part affinity fields, no detector.

  python -m posejax.main --config=configs/openpose_coco.py --workdir=runs/openpose_coco \
      --config.dataset.manual_dir=/data/coco   # or export COCO_DIR=/data/coco

The CMU body model (Cao et al., CVPR 2017; posejax/models/openpose.py):
VGG-19's first ten convolutions from torchvision's ImageNet weights, six
two-branch stages at stride 8, 19 confidence maps (COCO-18 and the
background) and 38 PAF channels (19 limbs), every stage supervised by the
masked L2 (posejax/codecs/affinity.py).

Target: COCO test-dev 61.8 AP (the paper's Table 3, its 2016 challenge
method; the port's test searches scales 0.5, 1, 1.5 and 2 of 368 / image
height, `eval.test_scales` here); not measured with posejax yet. The `cmu`
variant holds the CMU weights' network and input exactly, for importing
the PyTorch port's body_pose_model.pth (Hzzone/pytorch-openpose):

  python -m posejax.import_torch --config=configs/openpose_coco.py:cmu \
      --checkpoint=body_pose_model.pth --workdir=runs/openpose_cmu

The CMU training (Realtime_Multi-Person_Pose_Estimation, its pose_train
prototxt and data layer): 368x368 inputs, Gaussians of sigma 7 input
pixels (0.875 map pixels), PAFs 1 map pixel wide each side of a limb;
scale 0.5-1.1, rotation up to 40 degrees, centre moved up to 40 pixels
(0.11 of the side), flip; SGD at 4e-5 (a summed loss), momentum 0.9,
weight decay 5e-4, batch 10, 600,000 iterations, x0.333 every 136,106.
Here: the whole-image stream (every person of the image in the square
input, where the CMU data layer centres each crop on one person), Adam at
1e-4 on the mean loss (posejax's optimiser), 80 images a step on 8
devices for the same 106 epochs, x0.333 at the same points; decoding as
the port's (peaks of maps smoothed by sigma 3, 10 samples per limb,
thresholds 0.1 and 0.05, at least 4 parts and 0.4 per part). `smoke` runs
the whole path in a minute or two.
"""

from __future__ import annotations

import ml_collections

from posejax import config_lib

VARIANTS = ('cmu', 'smoke')
SMOKE_INPUT = (64, 64)  # (height, width)

# The CMU schedule in iterations of 10 images.
CMU_ITERATIONS, CMU_STEP, CMU_BATCH = 600_000, 136_106, 10


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' (from ImageNet), 'cmu' (the CMU weights' network), 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/openpose_coco.py', VARIANTS)
  c = config_lib.base_config()
  config_lib.use_dataset(c, 'coco_keypoints', config='2017')

  c.input.update(size=(368, 368), max_people=30, whole_image_scale=(0.5, 1.1),
                 whole_image_rotation=40.0, whole_image_translate=0.11, flip=True)
  c.codec.update(name='part_affinity', stride=8, sigma=0.875, limb_width=1.0,
                 decode_outputs=1, project_to_input=True, peak_sigma=3.0,
                 peak_threshold=0.1, max_peaks=32, paf_threshold=0.05, samples=10,
                 sample_fraction=0.8, min_parts=4, min_mean_score=0.4)
  c.model.update(name='openpose', preset='body_cmu',
                 input_normalization='imagenet',
                 pretrained=config_lib.imagenet_checkpoint('vgg19-dcbb9e9d.pth'))
  if 'cmu' in variants:
    # body_pose_model.pth's input: BGR / 256 - 0.5.
    c.model.update(input_normalization='openpose', pretrained='')

  batch = 80
  epochs = round(CMU_ITERATIONS * CMU_BATCH / config_lib.COCO_TRAIN_IMAGES)
  decay = [round(k * CMU_STEP * CMU_BATCH / config_lib.COCO_TRAIN_IMAGES)
           for k in range(1, CMU_ITERATIONS // CMU_STEP + 1)]
  c.optim.update(learning_rate=1e-4, weight_decay=0.0, schedule='step',
                 decay_factor=0.333, warmup_steps=0)
  config_lib.epoch_schedule(c, config_lib.COCO_TRAIN_IMAGES, batch, epochs=epochs,
                            decay_epochs=decay)
  c.eval.update(batch_size=8, metric='coco', flip_test=True, num_images_to_draw=8)

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
