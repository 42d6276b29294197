"""What every config shares, and checks that run before anything is built.

`base_config()` declares every field the code reads, with its default: code
reads `config.<section>.<field>`, never `.get(field, default)`. A recipe in
configs/ starts from it and states only what differs (configs/README.md);
`parse_variants` reads its `:variant,variant` argument against the module's
`VARIANTS` and `EXCLUSIVE`, durations given in epochs become steps with
`steps_for_epochs` (`epoch_schedule`), the COCO recipes share
`coco_top_down`, and the `smoke` variant keeps a recipe's structure at a few
channels, so that a whole run takes a minute or two on small data.
"""

from __future__ import annotations

import os
from typing import AbstractSet, Collection, Iterable, Sequence

from absl import flags
import ml_collections
from ml_collections import config_dict

from posejax import geometry
from posejax import models

SECTIONS = ('model', 'dataset', 'input', 'codec', 'loss', 'optim', 'train',
            'eval', 'mesh')

# COCO train2017 person instances with num_keypoints > 0: the training set of
# the official HRNet and SimpleBaselines code (and of the pipeline's filter).
COCO_TRAIN_INSTANCES = 149_813
# COCO train2017 images with at least one such person: the "57K images" of
# the bottom-up papers, and what the whole-image stream trains on.
COCO_TRAIN_IMAGES = 56_599

# The person detections of the official HRNet and SimpleBaselines evaluation
# (detector AP 56.4 on val2017), relative to dataset.manual_dir.
COCO_DETECTIONS = (
    'person_detection_results/COCO_val2017_detections_AP_H_56_person.json')

# The environment variable that gives each dataset's downloaded release to
# the recipes (dataset.manual_dir; --config.dataset.manual_dir overrides it).
MANUAL_DIR_VARIABLES = {
    'coco_keypoints': 'COCO_DIR',
    'mpii_human_pose': 'MPII_DIR',
    'fashionai_keypoints': 'FASHIONAI_DIR',
    'kaggle_facial_keypoints': 'KAGGLE_FACES_DIR',
    'wflw': 'WFLW_DIR',
    'ibug_300w': 'IBUG_300W_DIR',
}

# Steps of a smoke run: enough for a checkpoint, a restart and a decay.
SMOKE_STEPS = 6


def imagenet_checkpoint(file_name: str) -> str:
  """Where the recipes expect a published ImageNet checkpoint.

  `$POSEJAX_PRETRAINED_DIR/<file_name>` (default `~/posejax_pretrained`),
  under the name it is published with; `--config.model.pretrained` takes any
  other path, and '' trains from scratch (posejax/checkpoints/imagenet.py).
  """
  directory = os.environ.get('POSEJAX_PRETRAINED_DIR', '~/posejax_pretrained')
  return os.path.join(directory, file_name)


def base_config() -> ml_collections.ConfigDict:
  """Every field the code reads, with the values most recipes share.

  Fields a recipe must set itself (dataset.name, input.size, model.name,
  train.num_steps, ...) hold placeholders here; optional fields without a
  value (model.preset, loss.stage_weights) are typed None placeholders, which
  a recipe or `--config.<section>.<field>=...` sets like any other field. The
  model section also takes the fields of the network's class (a recipe's own;
  `models.build_model`).
  """
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict(dict(
      name='',  # a TFDS builder of posejax.data
      config='default',
      data_dir=os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets'),
      # Where the builder reads the downloaded release; needed once, to build
      # the records.
      manual_dir='',
      train_split='train',
      eval_split='validation',
      # The generated figures of config 'synthetic' (coco_keypoints
      # .synthetic_config); other parameters build other records.
      synthetic=dict(num_train=5000, num_val=500, seed=0, image_size=(256, 256)),
  ))

  c.input = ml_collections.ConfigDict(dict(
      size=(256, 192),  # (height, width)
      # Crop side over the box side: 1.25 enlarges the box as the HRNet and
      # pose-hg-train loaders do.
      padding=1.25,
      # Where the box centre lands in the input: 'centred' ((W-1)/2) or
      # 'official' (W/2, and annotated boxes clipped to the image as the
      # official COCO loader does); posejax/geometry.py.
      crop='centred',
      scale_factor=0.25,
      rotation_factor=15.0,  # degrees; clipped at twice this
      rotation_prob=0.6,
      flip=True,
      half_body_prob=0.0,
      half_body_min_keypoints=8,
      shuffle_buffer=16384,
      prefetch=2,
      # Decode each training image once and keep it in host memory (about
      # 0.9 MB per 640x480 image; ~52 GB for COCO's people): about 3x the
      # crops/s per core of reading JPEGs (docs/performance.md, "Input pipeline").
      cache_decoded_images=False,
      # Whole images (bottom-up codecs; posejax/data/pipeline/whole_image.py):
      # people kept per image (more are dropped, counted in the log), and
      # HigherHRNet's training augmentation: a square of the shorter side
      # times a uniform factor in `whole_image_scale`, a uniform rotation up
      # to `whole_image_rotation` degrees, a shift up to
      # `whole_image_translate` of the square's side per axis (HigherHRNet's
      # max_translate of 40 in its 200-pixel units), and the flip above.
      max_people=30,
      whole_image_scale=(0.75, 1.5),
      whole_image_rotation=30.0,
      whole_image_translate=0.2,
  ))

  c.codec = ml_collections.ConfigDict(dict(
      # 'heatmap' (Gaussian heatmaps, MSE), 'offsets' (disks and offset
      # fields decoded by voting), or bottom-up 'associative_embedding' and
      # 'part_affinity' (posejax/codecs/).
      name='heatmap',
      stride=4,
      sigma=2.0,  # heatmap pixels ('heatmap')
      # 'heatmap': the sigma of each supervised output's targets, in the
      # network's output order (CPN's and MSPN's Gaussians narrowing toward
      # the finest output); None: `sigma` for every output. The last entry
      # is the decoded output's and must equal `sigma`.
      stage_sigmas=config_dict.placeholder(tuple),
      radius=3.0,  # disk radius in heatmap pixels ('offsets')
      offset_weight=1.0,  # weight of the offset loss against the disks' ('offsets')
      # Sub-pixel decoding: 'quarter', 'official' (the official code's
      # post-processing exactly) or 'dark' (posejax/codecs/).
      refine='quarter',
      # 'centred' (posejax's heatmap grid) or 'official' (the grid of networks
      # trained by the official HRNet and SimpleBaselines code).
      grid='centred',
      # Associative embedding ('associative_embedding', bottom-up;
      # posejax/codecs/embedding.py and grouping.py): the tag loss weights,
      # then decoding: heatmaps averaged over the last `decode_outputs`
      # outputs, grouped at the input's resolution (`project_to_input`) or
      # the first output's, keypoint NMS window, thresholds, the quarter-
      # pixel adjustment and the search for missing joints; the order joints
      # are grouped in (None: COCO's for 17 keypoints, else index order).
      pull_weight=1e-3,
      push_weight=1e-3,
      decode_outputs=1,
      project_to_input=True,
      nms_kernel=5,
      detection_threshold=0.1,
      tag_threshold=1.0,
      adjust=True,
      refine_missing=True,
      joint_order=config_dict.placeholder(tuple),
      # Part affinity fields ('part_affinity', bottom-up, OpenPose;
      # posejax/codecs/affinity.py and assembly.py; `sigma` in map pixels as
      # above, 0.875 in the CMU training): the limbs (None: OpenPose's COCO-18
      # for 17 keypoints, else (keypoint, keypoint) pairs), the PAF's half
      # width in map pixels, then decoding: peak smoothing and threshold,
      # peaks kept per part, the line integral's threshold, samples and
      # share of samples above it, and the assembly's minimum parts and mean
      # score per part.
      limbs=config_dict.placeholder(tuple),
      limb_width=1.0,
      peak_sigma=3.0,
      peak_threshold=0.1,
      max_peaks=32,
      paf_threshold=0.05,
      samples=10,
      sample_fraction=0.8,
      min_parts=4,
      min_mean_score=0.4,
  ))

  c.model = ml_collections.ConfigDict(dict(
      name='',  # a key of posejax.models.NETWORKS
      # A key of the network's `presets`, applied before the fields set here;
      # None for the network class's defaults.
      preset=config_dict.placeholder(str),
      dtype='float32',  # or 'bfloat16'
      # An ImageNet classification checkpoint the backbone starts from when
      # the workdir holds no checkpoint ('' for none;
      # posejax/checkpoints/imagenet.py).
      pretrained='',
  ))

  # The codec's per-keypoint loss (heatmap MSE with target weights, or the
  # offset-voting loss), summed over every supervised stage
  # (posejax/losses.py).
  c.loss = ml_collections.ConfigDict(dict(
      # One weight a supervised stage, e.g. (0.5, 1.0); None: 1 for each.
      stage_weights=config_dict.placeholder(tuple),
      # Online hard keypoint mining: train on the `ohkm_topk` largest
      # keypoint losses of each instance ('instance', as CPN: 8 of 17) or on
      # the ohkm_topk x batch largest of the batch ('batch'); 0 is off.
      ohkm_topk=0,
      ohkm_scope='instance',
      # Which supervised outputs are mined (indices, negative from the end,
      # e.g. (-1,) for CPN's RefineNet); None: every output.
      ohkm_stages=config_dict.placeholder(tuple),
  ))

  c.optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-3,  # Adam
      warmup_steps=0,
      schedule='step',  # 'step' (x decay_factor at decay_steps), 'cosine' or 'linear' (to 0)
      decay_steps=(),
      decay_factor=0.1,
      weight_decay=0.0,  # > 0: AdamW
      grad_clip_norm=0.0,  # 0: no clipping
  ))

  c.train = ml_collections.ConfigDict(dict(
      global_batch_size=32,  # over all devices of the mesh
      num_steps=0,
      log_every_steps=100,
      checkpoint_every_steps=1_000,
      keep_checkpoints=2,
      eval_every_steps=0,  # 0: only the final evaluation
      # every_steps > 0: measure the validation loss that often, keep the
      # state with the lowest and stop after `patience` measurements without
      # a new lowest (see posejax/train.py).
      early_stopping=dict(every_steps=0, patience=10),
      # A profiler trace of 5 steps in the workdir, from step 10 and then
      # hourly (clu periodic_actions.Profile; process 0 only).
      profile=False,
  ))

  c.eval = ml_collections.ConfigDict(dict(
      batch_size=64,
      # '' scores with the dataset's native metric (posejax/evaluation).
      metric='',
      # 'ground_truth' boxes, or a COCO person-detection results file
      # relative to dataset.manual_dir (then box_score_threshold and OKS-NMS
      # at oks_nms_threshold apply).
      boxes='ground_truth',
      box_score_threshold=0.0,
      oks_nms_threshold=0.9,
      flip_test=True,
      # The official HRNet code's one-pixel shift of flipped-back heatmaps;
      # only heatmaps on the official grid need it (posejax/codecs/).
      flip_shift=False,
      # Bottom-up multi-scale testing: the input scales whose maps are
      # averaged (tags concatenated) before grouping; (1.0,) for one.
      test_scales=(1.0,),
      num_images_to_draw=32,
  ))

  c.mesh = ml_collections.ConfigDict(dict(data=-1))  # -1: every device
  return c


def parse_variants(arg: str | None, config_file: str,
                   choices: Iterable[str],
                   exclusive: Sequence[Collection[str]] = ()) -> frozenset[str]:
  """'a,b' -> {'a', 'b'}, checked against the variants a config file knows.

  Args:
    arg: what follows the ':' of `--config=FILE:arg` (None or '' for none).
    config_file: the file, for the error message.
    choices: every variant the file knows.
    exclusive: groups of variants of which at most one may be given; the
      first of a group is the recipe's default (`choose`).

  Returns:
    The variants given.

  Raises:
    ValueError: an unknown variant, or two of one exclusive group, named in
      the message with the variants the file knows.
  """
  choices = tuple(choices)
  given = frozenset(v.strip() for v in (arg or '').split(',') if v.strip())
  known = ', '.join(repr(c) for c in choices)
  unknown = sorted(given - set(choices))
  if unknown:
    raise ValueError(
        f'Unknown variant(s) {", ".join(map(repr, unknown))} of {config_file}; '
        f'known: {known}; several are joined with commas.')
  for group in exclusive:
    clash = sorted(given & set(group))
    if len(clash) > 1:
      raise ValueError(
          f'Variants {" and ".join(map(repr, clash))} of {config_file} '
          f'exclude each other; give one of {", ".join(map(repr, group))}.')
  return given


def choose(variants: AbstractSet[str], group: Sequence[str],
           default: str | None = None) -> str:
  """The one variant of an exclusive `group` given, else `default`.

  `default` is the group's first variant unless given: a recipe lists its
  default first, so that naming it changes nothing.
  """
  chosen = [v for v in group if v in variants]
  if chosen:
    return chosen[0]
  return group[0] if default is None else default


def steps_for_epochs(epochs: float, num_instances: int,
                     batch_size: int) -> int:
  """Steps of `epochs` passes over `num_instances` in batches of `batch_size`.

  An epoch is ceil(num_instances / batch_size) steps: the official loaders
  keep the last short batch.
  """
  return int(epochs * -(-num_instances // batch_size))


def use_dataset(config: ml_collections.ConfigDict, name: str, /,
                **fields) -> ml_collections.ConfigDict:
  """Sets dataset.name, the dataset `fields` given and manual_dir.

  manual_dir comes from the dataset's environment variable
  (MANUAL_DIR_VARIABLES; '' where unset).
  """
  config.dataset.update(
      name=name, manual_dir=os.environ.get(MANUAL_DIR_VARIABLES[name], ''), **fields)
  return config


def epoch_schedule(config: ml_collections.ConfigDict, num_instances: int,
                   batch_size: int, epochs: int,
                   decay_epochs: Sequence[int]) -> ml_collections.ConfigDict:
  """A schedule stated in epochs, as the official HRNet code states it.

  `epochs` epochs of `batch_size` over `num_instances`, optim.decay_factor
  at each of `decay_epochs`, a checkpoint every epoch and an evaluation
  every 10, all in steps of the global batch (`steps_for_epochs`).
  """
  def steps(n):
    return steps_for_epochs(n, num_instances, batch_size)

  config.optim.decay_steps = tuple(steps(n) for n in decay_epochs)
  config.train.update(global_batch_size=batch_size, num_steps=steps(epochs),
                      checkpoint_every_steps=steps(1),
                      eval_every_steps=steps(10))
  return config


def coco_top_down(config: ml_collections.ConfigDict, batch_size: int,
                  epochs: int,
                  decay_epochs: Sequence[int]) -> ml_collections.ConfigDict:
  """What the COCO recipes share: the official top-down setup.

  That of the official HRNet and SimpleBaselines code
  (deep-high-resolution-net.pytorch, human-pose-estimation.pytorch), but
  for the network, the scale, rotation and half-body augmentation and the
  schedule's length, which each recipe states: COCO 2017 from `$COCO_DIR`
  (or --config.dataset.manual_dir); rotation of 60% of the crops; Adam at
  1e-3 without weight decay; `epoch_schedule`; the official evaluation with
  the batch of training: one crop per box of COCO_DETECTIONS, flip test,
  rescoring and OKS-NMS at 0.9, pycocotools (configs/README.md).
  """
  use_dataset(config, 'coco_keypoints', config='2017')
  config.input.rotation_prob = 0.6  # as the official loader
  # The official weight decay (1e-4) only reaches SGD; its Adam has none.
  config.optim.update(learning_rate=1e-3, weight_decay=0.0)
  epoch_schedule(config, COCO_TRAIN_INSTANCES, batch_size, epochs, decay_epochs)
  config.eval.update(
      batch_size=batch_size,
      metric='coco',
      boxes=COCO_DETECTIONS,
      box_score_threshold=0.0,  # TEST.IMAGE_THRE
      oks_nms_threshold=0.9,    # TEST.OKS_THRE
  )
  return config


def narrow_model(model_config) -> None:
  """Sets the network's smoke fields (a few channels, the same structure)."""
  network = models.NETWORKS.get(model_config.name)
  if network is None:
    raise ValueError(f'Unknown model name {model_config.name!r}; known: '
                     f'{sorted(models.NETWORKS)}.')
  model_config.update(network.smoke)


def smoke(config: ml_collections.ConfigDict, input_size: Sequence[int],
          num_steps: int = SMOKE_STEPS) -> ml_collections.ConfigDict:
  """A recipe's `smoke` variant: its whole path, quickly, on small inputs.

  Keeps the recipe's data, codec, network structure (stages, heads,
  strides) and schedule shape, and shrinks what costs time: the network's
  width (its `smoke` fields in `models.NETWORKS`), the input to
  `input_size` (which the network's strides must divide), batches of 2 and
  `num_steps` steps. Without warm-up, so that one step moves every weight.
  The metrics of such a run mean nothing; that it runs does.
  """
  narrow_model(config.model)
  config.model.pretrained = ''  # no ImageNet network is this narrow
  config.input.size = tuple(input_size)
  config.input.shuffle_buffer = 16
  # The decays at the same fractions of the shorter run.
  full_steps = max(config.train.num_steps, 1)
  config.optim.decay_steps = tuple(
      max(1, s * num_steps // full_steps) for s in config.optim.decay_steps)
  config.optim.warmup_steps = 0
  config.train.update(global_batch_size=2, num_steps=num_steps,
                      log_every_steps=2, checkpoint_every_steps=3,
                      eval_every_steps=0)
  if config.train.early_stopping.every_steps:
    config.train.early_stopping.every_steps = 2
  config.eval.update(batch_size=2, num_images_to_draw=2)
  return config


def official_inference(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `official` variant: the conventions of networks trained by the
  official HRNet and SimpleBaselines code (deep-high-resolution-net.pytorch,
  human-pose-estimation.pytorch), so that an imported checkpoint sees the
  crops it was trained on and its heatmaps are read as that code reads them:

    input.crop='official'    box centre on input pixel W/2 (get_affine_transform),
                             annotated boxes clipped to the image (clean_bbox)
    codec.grid='official'    heatmap pixel j on input pixel stride * j
    codec.refine='official'  get_final_preds: (0, 0) for a non-positive
                             maximum, the quarter step only inside the map
    eval.flip_shift=True     TEST.SHIFT_HEATMAP of flipped-back maps
  """
  config.input.crop = 'official'
  config.codec.update(grid='official', refine='official')
  config.eval.flip_shift = True
  return config


def udp(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `udp` variant: unbiased data processing (Huang et al., CVPR 2020).

    input.crop='udp'    the crop measured in pixel spacings (posejax/geometry.py)
    codec.grid='udp'    heatmap pixels likewise (posejax/codecs/)
    codec.refine='dark' targets at the exact sub-pixel position, read back by
                        the Taylor step on the smoothed log-heatmap
  """
  config.input.crop = 'udp'
  config.codec.update(grid='udp', refine='dark')
  return config


def validate(config) -> None:
  """Raises one clear error for a config that cannot run."""
  missing = [s for s in SECTIONS if s not in config]
  if missing:
    raise ValueError(f'Config lacks the section(s) {missing}; every config '
                     f'has {list(SECTIONS)} (see config_lib.base_config).')
  size = tuple(config.input.size)
  if len(size) != 2 or min(size) <= 0:
    raise ValueError(f'input.size must be (height, width), got {size}.')
  geometry.crop_centre(size[1], config.input.crop)  # checks it
  if config.train.num_steps <= 0:
    raise ValueError(f'train.num_steps must be positive, got {config.train.num_steps}.')
  for field in ('log_every_steps', 'checkpoint_every_steps'):
    if config.train[field] <= 0:
      raise ValueError(f'train.{field} must be positive, got {config.train[field]}.')


def flatten(config, prefix: str = '') -> dict:
  """Nested config -> {'a.b': value} with values a writer can log."""
  flat = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if hasattr(value, 'items'):
      flat.update(flatten(value, name + '.'))
    elif isinstance(value, (int, float, str, bool)):
      flat[name] = value
    else:
      flat[name] = str(value)
  return flat


def _message(error: BaseException) -> str:
  # ml_collections raises KeyError(text) or AttributeError(KeyError(text));
  # str() of a KeyError is the repr of its text.
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  return str(error.args[0]) if error.args else str(error)


def unknown_field_message(error: BaseException, argv: Sequence[str]) -> str:
  """One line for the error ml_collections raises on an unknown override."""
  lines = [l.strip() for l in _message(error).splitlines() if l.strip()]
  name = lines[0].strip('"\'') if lines else '?'
  hint = ' '.join(lines[1:])
  given = [a.split('=')[0] for a in argv if a.startswith('--config.')]
  culprit = [a for a in given if name in a.split('.')] or given
  return (f'posejax: unknown config field {name!r} in {", ".join(culprit)}'
          + (f' ({hint[0].lower()}{hint[1:]})' if hint else '')
          + ': an override can only set a field the config file defines.')


def flag_error_message(error: BaseException) -> str:
  """One line for an absl flag error, e.g. a config file's get_config error.

  absl wraps (IllegalFlagValueError, 'flag --config=...: ...') the error of
  ml_collections, which carries the traceback of what get_config raised; the
  latter is the one to read.
  """
  wrapper = error.__context__
  if (wrapper is not None and wrapper.__context__ is not None
      and 'Error whilst parsing config file' in str(wrapper)):
    error = wrapper.__context__
  return 'posejax: ' + ' '.join(str(error).split())


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing that ends a bad flag or config in one message.

  ml_collections raises a bare KeyError/AttributeError for a misspelt
  `--config.x.y`, and an error of the config file's get_config (an unknown
  variant) reaches absl wrapped with its traceback; pass this as
  `app.run(main, flags_parser=parse_flags)`.
  """
  try:
    remaining = flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    raise SystemExit(unknown_field_message(e, argv)) from None
  except flags.Error as e:
    raise SystemExit(flag_error_message(e)) from None
  if 'config' in flags.FLAGS and flags.FLAGS['config'].present:
    try:
      # A file that failed to load stands as a placeholder that raises on use.
      flags.FLAGS.config.keys()
    except OSError:
      path = flags.FLAGS['config'].config_filename.partition(':')[0]
      raise SystemExit(f'posejax: cannot read the config file {path!r} (from '
                       f'{os.getcwd()}); pass e.g. --config=configs/synthetic.py.'
                       ) from None
  return remaining
