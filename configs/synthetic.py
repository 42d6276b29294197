r"""HRNet on generated figures with the 17 COCO keypoints: the quickstart.

Generates the data on first use (5,000 train / 500 val figures), trains a
narrow HRNet at 128x96 for 3,000 steps of 16 and evaluates with ground-truth
boxes and flip test.

  python -m posejax.main --config=configs/synthetic.py --workdir=/tmp/posejax_quickstart

Measured: OKS AP 0.761 (AP50 0.928, PCK@0.1 0.941) on the synthetic val split,
7 min 45 s wall from an empty data dir on a 2-core x86 CPU with jaxlib 0.10.2
(the target is AP >= 0.70 within 10 minutes; see README, Results). At 96x64
the same network reached 0.681 in 4,800 steps: the thin forearms, two or
three pixels wide there, cost the wrists most.

Variants (`configs/synthetic.py:NAME`):
  hrnet: the default above.
  simple_baseline, hourglass, cpm: the other network families, narrowed to
    train on a CPU in minutes with the same data and schedule (the published
    sizes are the presets in posejax/models, e.g. `simple_baseline:r50`).
  smoke: tiny data and network, a few steps; the whole path in about a minute.
"""

import os

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict(dict(
      name='coco_keypoints',
      config='synthetic',
      data_dir=os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'),
      manual_dir='',
      keypoints='coco',
      train_split='train',
      eval_split='validation',
      synthetic=dict(num_train=5000, num_val=500, seed=0, image_size=(256, 256)),
  ))

  c.input = ml_collections.ConfigDict(dict(
      size=(128, 96),  # (height, width)
      padding=1.25,
      # The generated figures already vary in scale and rotation as much as
      # the val split does, and the short CPU schedule underfits: light scale
      # jitter and no extra rotation train best here (at 96x64: AP 0.664
      # against 0.652 with scale 0.2 and rotation 15 degrees on 30% of the
      # crops).
      scale_factor=0.1,
      rotation_factor=15.0,
      rotation_prob=0.0,
      flip=True,
      half_body_prob=0.0,
      half_body_min_keypoints=8,
      shuffle_buffer=8192,
      prefetch=2,
      # Decode each training image once and keep it in memory (about 0.5 GB
      # here): the input pipeline then costs 18 instead of 26 ms of CPU per
      # batch, time the train step gets on two cores.
      cache_decoded_images=True,
  ))

  c.codec = ml_collections.ConfigDict(dict(
      name='heatmap', stride=4, sigma=1.5,
      # Sub-pixel decoding: 'quarter' (HRNet's) or 'dark'. At 24x16 heatmaps
      # DARK is worth about +0.05 AP here.
      refine='dark',
  ))

  c.model = ml_collections.ConfigDict(dict(
      name='hrnet',
      dtype='float32',
      # A 16-wide stem costs a third less per step than 32 on a CPU, and the
      # steps it buys are worth more than its width.
      stem_width=16,
      stage1_blocks=1,
      widths=(16, 32, 64),
      num_modules=(1, 1),
      num_blocks=2,
      # 'concat' (the HRNetV2 head on all branches) learns faster per step
      # but costs a fifth more per step: 0.632 AP after 3,000 steps here.
      head='single',
  ))

  c.loss = ml_collections.ConfigDict(dict(name='mse'))

  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-3,
      warmup_steps=50,
      schedule='cosine',
      decay_steps=(),
      decay_factor=0.1,
      weight_decay=0.0,
      grad_clip_norm=0.0,
  ))

  c.train = ml_collections.ConfigDict(dict(
      global_batch_size=16,
      num_steps=3000,
      log_every_steps=100,
      checkpoint_every_steps=1000,
      keep_checkpoints=2,
      eval_every_steps=0,  # 0: only the final evaluation
  ))

  c.eval = ml_collections.ConfigDict(dict(
      batch_size=64,
      # '' scores with the dataset's native metric (OKS AP for COCO data);
      # see posejax/eval.py.
      metric='',
      # 'ground_truth' boxes, or a COCO person-detection results file
      # (then box_score_threshold and OKS-NMS at oks_nms_threshold apply).
      boxes='ground_truth',
      box_score_threshold=0.0,
      oks_nms_threshold=0.9,
      flip_test=True,
      # The official HRNet code's one-pixel shift of flipped-back heatmaps;
      # the heatmaps here need none (posejax/codecs.py).
      flip_shift=False,
      num_images_to_draw=32,
  ))

  c.mesh = ml_collections.ConfigDict(dict(data=-1))

  if arg in (None, 'hrnet'):
    pass
  elif arg == 'simple_baseline':
    # ResNet-50 layout at a quarter of the width, lighter deconvolutions;
    # 128x96 is divisible by the backbone's stride of 32.
    c.model = ml_collections.ConfigDict(dict(
        name='simple_baseline', dtype='float32', depth=50, width=16,
        deconv_features=(64, 64, 64)))
  elif arg == 'hourglass':
    # Two stacks of depth-3 hourglasses (input divisible by 4 * 2**3).
    c.model = ml_collections.ConfigDict(dict(
        name='hourglass', dtype='float32', num_stacks=2, features=64, depth=3))
  elif arg == 'cpm':
    # Three stages at 1/8 resolution: 16x12 beliefs.
    c.codec.stride = 8
    c.model = ml_collections.ConfigDict(dict(
        name='cpm', dtype='float32', num_stages=3, feat_channels=32,
        middle_channels=16, stem_channels=32, stem_hidden_channels=128))
  elif arg == 'smoke':
    c.dataset.synthetic = dict(num_train=96, num_val=24, seed=0, image_size=(128, 128))
    c.input.size = (64, 48)
    c.input.shuffle_buffer = 256
    c.model.update(stem_width=16, widths=(8, 16), num_modules=(1,), num_blocks=1)
    c.optim.warmup_steps = 2
    c.train.update(global_batch_size=8, num_steps=6, log_every_steps=2,
                   checkpoint_every_steps=3, eval_every_steps=0)
    c.eval.update(batch_size=8, num_images_to_draw=8)
  else:
    raise ValueError(
        f'Unknown variant {arg!r} of configs/synthetic.py; known: hrnet, '
        'simple_baseline, hourglass, cpm, smoke.')
  return c
