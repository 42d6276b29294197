r"""One hourglass with full-resolution heatmaps on the Kaggle facial keypoints.

  python -m posejax.main --config=configs/hourglass_facial_keypoints.py \
      --workdir=runs/hg1_faces --config.dataset.manual_dir=/data/kaggle_faces
      # or export KAGGLE_FACES_DIR=/data/kaggle_faces

manual_dir holds training.csv and test.csv of the Kaggle "Facial Keypoints
Detection" competition (see posejax/data/kaggle_facial_keypoints.py).

Metric: RMSE in pixels of the 96x96 images over the labelled coordinates
(the competition's score), on the held-out 10% of training.csv: `RMSE` and
`RMSE/<keypoint>` in metrics.json. Target: RMSE 1.81, reached by a public
solution of this kind (one hourglass, heatmaps at the input resolution);
not reproduced here yet.

Recipe: a single hourglass stack (256 features, depth 4) whose stem keeps
the resolution (`model.stride=1`: no stride-2 conv, no max-pool), so the
15 heatmaps are 96x96 like the images, sigma 2 pixels, DARK decoding. Most
rows of training.csv label only 4 of the 15 points; the loss is masked for
the missing ones (their target weight is visibility > 0, i.e. 0), so the
network is neither taught that they are absent nor where they are. Light
augmentation (scale 0.1, rotation 10 degrees on half the faces, flip with
left/right swapped), Adam 1e-3 with cosine decay, batch 32 for 100 epochs of
the about 6,340 training faces.

Hardware assumed: one GPU (a few GB); the full-resolution hourglass is slow
on a CPU. Not measured with posejax yet.
"""

from __future__ import annotations

import os

import ml_collections

# training.csv has 7,049 rows; the validation hold-out takes about 10%.
TRAIN_FACES = 6_340


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg:
    raise ValueError(f'configs/hourglass_facial_keypoints.py has no variant {arg!r}.')
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict(dict(
      name='kaggle_facial_keypoints',
      config='default',
      data_dir=os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'),
      manual_dir=os.environ.get('KAGGLE_FACES_DIR', ''),
      keypoints='kaggle_faces',
      train_split='train',
      eval_split='validation',
  ))

  c.input = ml_collections.ConfigDict(dict(
      size=(96, 96),
      padding=1.0,  # the box is the whole 96x96 face crop
      scale_factor=0.1,
      rotation_factor=10.0,
      rotation_prob=0.5,
      flip=True,
      half_body_prob=0.0,
      half_body_min_keypoints=8,
      shuffle_buffer=8192,
      prefetch=2,
  ))

  c.codec = ml_collections.ConfigDict(dict(
      name='heatmap', stride=1, sigma=2.0, refine='dark'))  # 96x96 maps

  c.model = ml_collections.ConfigDict(dict(
      name='hourglass', dtype='float32', num_stacks=1, features=256, depth=4,
      stride=1))

  c.loss = ml_collections.ConfigDict(dict(name='mse'))  # masked by visibility

  batch = 32
  num_steps = 100 * -(-TRAIN_FACES // batch)  # 100 epochs: 19,900 steps
  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-3,
      warmup_steps=200,
      schedule='cosine',
      decay_steps=(),
      decay_factor=0.1,
      weight_decay=0.0,
      grad_clip_norm=0.0,
  ))

  c.train = ml_collections.ConfigDict(dict(
      global_batch_size=batch,
      num_steps=num_steps,
      log_every_steps=100,
      checkpoint_every_steps=2_000,
      keep_checkpoints=2,
      eval_every_steps=5_000,
  ))

  c.eval = ml_collections.ConfigDict(dict(
      batch_size=64,
      metric='rmse',
      boxes='ground_truth',
      box_score_threshold=0.0,
      oks_nms_threshold=0.9,
      flip_test=True,
      flip_shift=False,
      num_images_to_draw=32,
  ))

  c.mesh = ml_collections.ConfigDict(dict(data=-1))
  return c
