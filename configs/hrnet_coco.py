r"""HRNet on COCO 2017 person keypoints: the official top-down recipe.

  python -m posejax.main --config=configs/hrnet_coco.py --workdir=runs/hrnet_w32_256x192 \
      --config.dataset.manual_dir=/data/coco   # or export COCO_DIR=/data/coco

manual_dir holds COCO 2017 as downloaded (annotations/, train2017/,
val2017/) and the person detections the official evaluation uses,
person_detection_results/COCO_val2017_detections_AP_H_56_person.json
(detector AP 56.4 on val2017; linked from "Data preparation" in
github.com/leoxiaobin/deep-high-resolution-net.pytorch).

Published result it targets (deep-high-resolution-net.pytorch README, COCO
val2017 with those detections, flip test; Sun et al., CVPR 2019, Table 1):

  variant                  network      input    AP
  (default)                HRNet-W32    256x192  74.4
  :w48                     HRNet-W48    256x192  75.1
  :384x288                 HRNet-W32    384x288  75.8
  :w48,384x288             HRNet-W48    384x288  76.3

`smoke` (e.g. `:w48,smoke`) runs the recipe's whole path quickly: the same
structure at a few channels, a 64x48 input, batches of 2, a few steps
(config_lib.smoke); its metrics mean nothing.

Hardware assumed: the official runs used 4 GPUs with 32 crops each (24 for
W48 at 384x288); here that is one global batch over the mesh, e.g. one
80 GB GPU or a host with several (bf16: --config.model.dtype=bfloat16). Not
measured with posejax yet.

ImageNet start, as the official runs: the backbone is loaded from
$POSEJAX_PRETRAINED_DIR/hrnet_w32-36af842e.pth (hrnet_w48-8ef0771d.pth for
:w48; the directory defaults to ~/posejax_pretrained), the
HRNet-Image-Classification weights linked from the "Quick start" of
github.com/leoxiaobin/deep-high-resolution-net.pytorch, read as .pth (with
torch) or as .npz/.safetensors converted by `python -m posejax.pretrained`.
--config.model.pretrained=/path/to/file takes another path, and
--config.model.pretrained='' trains from scratch (the HRNet paper reports
73.4 AP for W32 256x192 without pretraining).

The official pose checkpoints themselves evaluate with the `official`
variant after `python -m posejax.import_torch
--config=configs/hrnet_coco.py:official
--checkpoint=pose_hrnet_w32_256x192.pth --workdir=DIR` (then `python -m
posejax.eval --config=configs/hrnet_coco.py:official --workdir=DIR`; combine
as e.g. `:w48,384x288,official`); a workdir that holds a checkpoint never
loads the ImageNet backbone.

Evaluation follows the official code: one crop per detection box (score >=
eval.box_score_threshold), flip test, each person rescored by box score x
mean keypoint score above 0.2, OKS-NMS at 0.9 per image, then pycocotools
against every annotation. `eval.flip_shift` (the official TEST.SHIFT_HEATMAP)
is off: it compensates the offset of the official heatmap grid, which
posejax's heatmaps do not have (posejax/codecs.py); shifting them would move
the flipped half of every prediction one heatmap pixel (4 input pixels) to the
right. The `official` variant is for networks trained by the official code
and reproduces its inference (`config_lib.official_inference`): its crop
(box centre on input pixel W/2, annotated boxes clipped to the image), its
heatmap grid (1.5 input pixels from posejax's), its post-processing of the
heatmaps (`codec.refine='official'`) and the shift. With
--config.eval.boxes=ground_truth the annotated boxes are used instead (the
official USE_GT_BBOX).
"""

from __future__ import annotations

import os

import ml_collections

from posejax import config_lib

DETECTIONS = 'person_detection_results/COCO_val2017_detections_AP_H_56_person.json'
SMOKE_INPUT = (64, 48)  # (height, width)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: '' (W32 256x192), 'w48', '384x288', 'official', 'smoke'."""
  variants = config_lib.parse_variants(
      arg, 'configs/hrnet_coco.py', ('w48', '384x288', 'official', 'smoke'))
  w48, large = 'w48' in variants, '384x288' in variants
  c = config_lib.base_config()

  c.dataset.update(
      name='coco_keypoints',
      config='2017',
      manual_dir=os.environ.get('COCO_DIR', ''),
  )

  c.input.update(
      size=(384, 288) if large else (256, 192),  # (height, width)
      scale_factor=0.35,
      rotation_factor=45.0,
      rotation_prob=0.6,  # the official loader rotates 60% of the crops
      half_body_prob=0.3,
  )

  # Heatmaps 64x48 (96x72 at 384x288); sigma 2 (3) heatmap pixels.
  c.codec.update(
      sigma=3.0 if large else 2.0,
      refine='quarter')  # the official quarter-pixel step

  c.model.update(
      name='hrnet', preset='w48' if w48 else 'w32',
      pretrained=config_lib.imagenet_checkpoint(
          'hrnet_w48-8ef0771d.pth' if w48 else 'hrnet_w32-36af842e.pth'))

  # 210 epochs, x0.1 at epochs 170 and 200, counted in steps of the global
  # batch: an epoch is ceil(149,813 / 128) = 1,171 steps (1,561 at batch
  # 96), so 245,910 steps with decays at 199,070 and 234,200 for batch 128.
  batch = 96 if (w48 and large) else 128  # 24 or 32 per GPU x 4 GPUs
  def epochs(n):
    return config_lib.steps_for_epochs(n, config_lib.COCO_TRAIN_INSTANCES, batch)

  c.optim.update(
      learning_rate=1e-3,
      decay_steps=(epochs(170), epochs(200)),
      # The official WD 1e-4 only reaches SGD; its Adam has none.
      weight_decay=0.0,
  )

  c.train.update(
      global_batch_size=batch,
      num_steps=epochs(210),
      checkpoint_every_steps=epochs(1),
      eval_every_steps=epochs(10),
  )

  c.eval.update(
      batch_size=batch,
      metric='coco',
      # Relative to dataset.manual_dir; 'ground_truth' for annotated boxes.
      boxes=DETECTIONS,
      box_score_threshold=0.0,  # TEST.IMAGE_THRE
      oks_nms_threshold=0.9,    # TEST.OKS_THRE
  )

  if 'official' in variants:
    config_lib.official_inference(c)

  if 'smoke' in variants:
    config_lib.smoke(c, SMOKE_INPUT)
  return c
