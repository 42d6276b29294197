"""Datasets: TFDS builders (one module each) and the tf.data pipeline.

`get_builder(config.dataset)` returns a prepared builder, building it on first
use; every problem with the data location is reported before any model is
compiled (`missing_data` says what is missing without building anything).

Each dataset states its facts once, on its builder class, and everything
else reads them from there:
  BUILDER_CONFIGS[i].keypoints  the keypoint layout (a `keypoints.DATASETS`
                                key): names, flip pairs, skeleton, sigmas
  METRIC                        its native metric (`evaluation.METRICS` key)
  EVAL_EXTRAS                   the per-object record fields its metric needs
                                beyond the keypoints (`head_box`, ...), which
                                evaluation examples carry

`config.dataset` fields read here: `name` (a key of BUILDERS), `config` (one
of the builder's BUILDER_CONFIGS; empty for its first), `data_dir` (where the
TFDS records live), `manual_dir` (the downloaded upstream files). COCO's
`synthetic` config also reads `synthetic`.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from posejax import keypoints as keypoints_lib
from posejax.data import coco_keypoints
from posejax.data import face_landmarks
from posejax.data import fashionai_keypoints
from posejax.data import kaggle_facial_keypoints
from posejax.data import mpii_human_pose

BUILDERS = {
    'coco_keypoints': coco_keypoints.CocoKeypoints,
    'mpii_human_pose': mpii_human_pose.MpiiHumanPose,
    'fashionai_keypoints': fashionai_keypoints.FashionaiKeypoints,
    'kaggle_facial_keypoints': kaggle_facial_keypoints.KaggleFacialKeypoints,
    'wflw': face_landmarks.Wflw,
    'ibug_300w': face_landmarks.Ibug300w,
}


def _builder_config(dataset_config):
  """The config name (or, for generated COCO data, config object) to build."""
  cls = BUILDERS[dataset_config.name]
  name = dataset_config.config or cls.BUILDER_CONFIGS[0].name
  known = [c.name for c in cls.BUILDER_CONFIGS]
  if dataset_config.name == 'coco_keypoints' and name == 'synthetic':
    config = coco_keypoints.synthetic_config(**dataset_config.synthetic)
    # TFDS refuses a custom config named like a registered one.
    return config.name if config.name in known else config
  if name not in known:
    raise ValueError(
        f'Unknown dataset.config {name!r} for {dataset_config.name}; '
        f'known: {known}.')
  return name


def _needs_manual_dir(builder: tfds.core.DatasetBuilder) -> bool:
  """Every builder reads manual_dir except those that generate their data."""
  return getattr(builder.builder_config, 'synthetic', None) is None


def keypoint_spec(builder: tfds.core.DatasetBuilder) -> keypoints_lib.KeypointSpec:
  """The keypoint layout of a builder's records."""
  return keypoints_lib.get_spec(builder.builder_config.keypoints)


def get_builder(dataset_config, prepare: bool = True) -> tfds.core.DatasetBuilder:
  """Builder for `config.dataset`; with `prepare`, builds missing records.

  Raises:
    ValueError: unknown name or config, empty data_dir.
    FileNotFoundError: (with `prepare`) the records are not built and the
      upstream files are not in manual_dir; the message says where to get them.
  """
  if dataset_config.name not in BUILDERS:
    raise ValueError(
        f'Unknown dataset.name {dataset_config.name!r}; known: {sorted(BUILDERS)}.')
  if not dataset_config.data_dir:
    raise ValueError('dataset.data_dir is empty: set --config.dataset.data_dir '
                     'to the folder that holds (or will hold) the TFDS records.')
  data_dir = os.path.expanduser(dataset_config.data_dir)
  builder = BUILDERS[dataset_config.name](
      config=_builder_config(dataset_config), data_dir=data_dir)
  if prepare:
    message = missing_data(builder, dataset_config)
    if message:
      raise FileNotFoundError(message)
    prepare_records(builder, dataset_config)
  return builder


def missing_data(builder: tfds.core.DatasetBuilder, dataset_config) -> str | None:
  """Why `builder`'s records cannot be built, or None if they can (or are)."""
  if builder.is_prepared() or not _needs_manual_dir(builder):
    return None
  manual_dir = dataset_config.manual_dir
  if manual_dir and os.path.isdir(os.path.expanduser(manual_dir)):
    return None
  return (f'{dataset_config.name}/{builder.builder_config.name} is not built in '
          f'{builder.data_dir_root} and dataset.manual_dir ({manual_dir!r}) is '
          'not a folder. Point --config.dataset.manual_dir at the downloaded '
          'files:\n' + builder.MANUAL_DOWNLOAD_INSTRUCTIONS)


def prepare_records(builder: tfds.core.DatasetBuilder, dataset_config) -> None:
  """Builds the records from manual_dir (or generates them) if not built yet."""
  if builder.is_prepared():
    return
  manual_dir = dataset_config.manual_dir
  download_config = tfds.download.DownloadConfig(
      manual_dir=os.path.expanduser(manual_dir) if manual_dir else None)
  builder.download_and_prepare(download_config=download_config)
