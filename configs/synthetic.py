r"""HRNet on generated figures with the 17 COCO keypoints: the quickstart.

  python -m posejax.main --config=configs/synthetic.py --workdir=/tmp/posejax_quickstart

Target: OKS AP >= 0.70 on the synthetic val split within 10 minutes on a
2-core CPU; measured 0.761 in 7 min 45 s (2-core x86, from an empty data
dir) and 0.757 in 2 min 34 s (2-core Zen 5 EPYC); docs/results.md.

Beyond the base: 5,000 train / 500 val generated figures (made on first
use), a narrow HRNet at 128x96, sigma 1.5 with DARK decoding, light scale
jitter and no rotation, cached decoded images, 3,000 steps of 16 with
cosine decay; ground-truth boxes. Variants (comma-joined): the other network
families, codecs and hard keypoint mining, and `smoke` (tiny data, 6
steps); each is described in configs/README.md.

The bottom-up quickstart on the same data is configs/synthetic_bottom_up.py.
"""

import ml_collections

from posejax import config_lib
from posejax.models import cpn
from posejax.models import mspn

NETWORKS = ('hrnet', 'simple_baseline', 'hourglass', 'cpm', 'cpn', 'mspn')
CODECS = ('dark', 'quarter', 'udp', 'offsets')
VARIANTS = (*NETWORKS, *CODECS, 'ohkm', 'smoke')
EXCLUSIVE = (NETWORKS, CODECS)  # one at most of each; the first is the default

# CPN's and MSPN's outputs each end in a BatchNorm, which the references start
# at scale 1 against peak-255 targets (posejax: outputs / 255). Adam moves
# that scale by about the learning rate a step, too little in a few thousand
# steps; starting it at 0, with the outputs unscaled, starts them at zero.
SHORT_SCHEDULE_OUTPUTS = dict(output_scale=1.0, output_norm_init=0.0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Variants: one of NETWORKS, one of CODECS, 'ohkm', 'smoke'."""
  variants = config_lib.parse_variants(arg, 'configs/synthetic.py', VARIANTS,
                                       EXCLUSIVE)
  network = config_lib.choose(variants, NETWORKS)
  codec = config_lib.choose(variants, CODECS)
  c = config_lib.base_config()

  # The base's dataset.synthetic: 5,000 train / 500 val figures of 256x256.
  c.dataset.update(name='coco_keypoints', config='synthetic')

  c.input.update(
      size=(128, 96),  # (height, width)
      # The generated figures already vary in scale and rotation as much as
      # the val split does, and the short CPU schedule underfits: light scale
      # jitter and no extra rotation train best here (at 96x64: AP 0.664
      # against 0.652 with scale 0.2 and rotation 15 degrees on 30% of the
      # crops).
      scale_factor=0.1,
      rotation_prob=0.0,
      shuffle_buffer=8192,
      # Decode each training image once and keep it in memory (about 0.5 GB
      # here): the input pipeline then leaves more of the two cores to the
      # train step.
      cache_decoded_images=True,
  )

  c.codec.update(
      sigma=1.5,
      # Sub-pixel decoding: 'quarter' (HRNet's) or 'dark'. On the 24x16
      # heatmaps of a 96x64 input DARK was worth about +0.05 AP here; 128x96
      # gives 32x24.
      refine='dark',
  )

  c.model.update(
      name='hrnet',
      # A 16-wide stem costs less per step than 32 on a CPU, and the steps it
      # buys are worth more than its width.
      stem_width=16,
      stage1_blocks=1,
      widths=(16, 32, 64),
      num_modules=(1, 1),
      num_blocks=2,
      # 'concat' (the HRNetV2 head on all branches) learns faster per step
      # but costs more per step: 0.632 AP in the same time at 96x64.
      head='single',
  )

  c.optim.update(warmup_steps=50, schedule='cosine')

  c.train.update(
      global_batch_size=16,
      num_steps=3000,
      checkpoint_every_steps=1000,
  )

  if network != 'hrnet':
    c.model = config_lib.base_config().model  # without HRNet's fields
  if network == 'simple_baseline':
    # ResNet-50 layout at a quarter of the width, lighter deconvolutions;
    # 128x96 is divisible by the backbone's stride of 32.
    c.model.update(name='simple_baseline', depth=50, width=16,
                   deconv_features=(64, 64, 64))
  elif network == 'hourglass':
    # Two stacks of depth-3 hourglasses (input divisible by 4 * 2**3).
    c.model.update(name='hourglass', num_stacks=2, features=64, depth=3)
  elif network == 'cpm':
    # Three stages at 1/8 resolution: 16x12 beliefs.
    c.codec.stride = 8
    c.model.update(name='cpm', num_stages=3, feat_channels=32, middle_channels=16,
                   stem_channels=32, stem_hidden_channels=128)

  elif network == 'cpn':
    # CPN-R50's layout at an eighth of the width (a step costs about 1.5x
    # the HRNet's here). The port's supervision: Gaussians narrowing from
    # the coarsest GlobalNet level to the finest, scaled so that RefineNet's
    # is the base's sigma, and hard keypoint mining on RefineNet only.
    # Every output ends in a BatchNorm; started at scale 0 (outputs at zero,
    # peak-1 targets unscaled) instead of the published 1 with outputs / 255,
    # it trains in this budget: AP 0.372 against 0.170 (docs/results.md).
    c.model.update(name='cpn', depth=50, width=8, pyramid_features=32,
                   refine_planes=16, **SHORT_SCHEDULE_OUTPUTS)
    c.codec.stage_sigmas = cpn.stage_sigmas(c.codec.sigma)
    c.loss.update(stage_weights=(1.0, 1.0, 1.0, 1.0, 2.0), ohkm_topk=8,
                  ohkm_stages=(-1,))
  elif network == 'mspn':
    # Two stages of MSPN's layout at an eighth of the width; a step costs
    # about 2.2x the HRNet's, so 2,000 steps keep the quickstart's time.
    # The official coarse-to-fine supervision, scaled so that the last
    # output's sigma is the base's. Outputs started at zero as CPN's: AP
    # 0.175 against 0.045 with the published start and 1/255.
    c.model.update(name='mspn', num_stages=2, width=8, decoder_features=32,
                   **SHORT_SCHEDULE_OUTPUTS)
    c.codec.stage_sigmas = mspn.stage_sigmas(2, c.codec.sigma)
    c.loss.update(stage_weights=mspn.stage_weights(2), ohkm_topk=8,
                  ohkm_stages=mspn.mined_outputs(2))
    c.train.num_steps = 2000

  if codec == 'quarter':
    c.codec.refine = 'quarter'
  elif codec == 'udp':
    config_lib.udp(c)
  elif codec == 'offsets':
    c.codec.update(name='offsets', radius=3.0)
  if 'ohkm' in variants:
    c.loss.ohkm_topk = 8

  if 'smoke' in variants:
    c.dataset.synthetic = dict(num_train=96, num_val=24, seed=0, image_size=(128, 128))
    # ResNet backbones need sides divisible by 32.
    c.input.size = ((64, 64) if network in ('simple_baseline', 'cpn', 'mspn')
                    else (64, 48))
    c.input.shuffle_buffer = 256
    if network == 'hrnet':
      c.model.update(stem_width=16, widths=(8, 16), num_modules=(1,), num_blocks=1)
    else:
      config_lib.narrow_model(c.model)
    c.optim.warmup_steps = 2
    c.train.update(global_batch_size=8, num_steps=6, log_every_steps=2,
                   checkpoint_every_steps=3, eval_every_steps=0)
    c.eval.update(batch_size=8, num_images_to_draw=8)
  return c

