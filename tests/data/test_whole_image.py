"""The whole-image stream of bottom-up networks (posejax/data/pipeline/whole_image.py)."""

import logging

import numpy as np
import pytest

from posejax import batches
from posejax import geometry

# Each test builds whole-image streams of the smoke data.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def bottom_up(smoke_data_dir):
  import recipe_configs

  def config(**input_fields):
    c = recipe_configs.load_config('synthetic_bottom_up', 'smoke')
    c.dataset.data_dir = smoke_data_dir
    c.input.update(input_fields)
    return c
  return config


def _records(builder):
  return {int(r['image/id']): r for r in builder.as_dataset(
      split='validation', shuffle_files=False).as_numpy_iterator()}


def test_evaluation_batches_show_whole_images_and_every_person(
    bottom_up, smoke_builder):
  from posejax.data import pipeline
  config = bottom_up()
  batch = next(pipeline.whole_image.eval_dataset(smoke_builder, config)
               .as_numpy_iterator())
  size = tuple(config.input.size)
  assert batches.schema_errors(batch, batches.WHOLE_IMAGE_FIELDS, 17, size,
                               max_people=config.input.max_people) == []
  records = _records(smoke_builder)
  for i, image_id in enumerate(batch['image_id']):
    objects = records[int(image_id)]['objects']
    people = (objects['num_keypoints'] > 0) & (objects['iscrowd'] == 0)
    n = int(people.sum())
    assert n >= 1
    # Back through the inverse of the crop: the annotation, exactly.
    visible = objects['visibility'][people] > 0
    back = geometry.input_to_image(
        batch['keypoints'][i, :n], np.broadcast_to(batch['center'][i], (n, 2)),
        np.broadcast_to(batch['scale'][i], (n, 2)), size)
    np.testing.assert_allclose(back[visible], objects['keypoints'][people][visible],
                               atol=1e-3)
    np.testing.assert_array_equal(batch['visibility'][i, :n],
                                  objects['visibility'][people])
    assert not batch['visibility'][i, n:].any()  # the padding
  assert not batch['ignore_mask'].any()  # generated figures are all labelled


def test_training_flip_mirrors_people_and_swaps_left_and_right(
    bottom_up, smoke_builder):
  from posejax import keypoints as keypoints_lib
  from posejax.data import pipeline
  spec = keypoints_lib.get_spec('coco')
  plain = next(pipeline.whole_image.train_dataset(
      smoke_builder, bottom_up(flip=False)).as_numpy_iterator())
  flipped = next(pipeline.whole_image.train_dataset(
      smoke_builder, bottom_up(flip=True)).as_numpy_iterator())
  width = bottom_up().input.size[1]
  mirrored = plain['keypoints'][:, :, spec.flip_index].copy()
  mirrored[..., 0] = (width - 1) - mirrored[..., 0]
  kinds = []
  for i in range(len(plain['image'])):
    labelled = plain['visibility'][i] > 0
    if np.allclose(flipped['keypoints'][i][labelled], plain['keypoints'][i][labelled],
                   atol=1e-3):
      kinds.append('same')
    else:
      swapped = plain['visibility'][i][:, spec.flip_index] > 0
      np.testing.assert_allclose(flipped['keypoints'][i][swapped],
                                 mirrored[i][swapped], atol=1e-3)
      np.testing.assert_allclose(flipped['image'][i].astype(float),
                                 plain['image'][i][:, ::-1].astype(float), atol=60)
      kinds.append('flipped')
  assert set(kinds) == {'same', 'flipped'}


def test_a_resumed_stream_continues_where_it_stopped(bottom_up, smoke_builder):
  from posejax.data import pipeline
  config = bottom_up()
  stream = pipeline.whole_image.train_dataset(smoke_builder, config).as_numpy_iterator()
  next(stream)
  second = next(stream)
  resumed = next(pipeline.whole_image.train_dataset(
      smoke_builder, config, start_step=1).as_numpy_iterator())
  for key in ('image', 'keypoints', 'visibility', 'image_id'):
    np.testing.assert_array_equal(resumed[key], second[key])


def test_more_people_than_the_maximum_are_dropped_and_counted(
    bottom_up, smoke_builder, caplog):
  from posejax.data import pipeline
  config = bottom_up(max_people=1)
  with caplog.at_level(logging.WARNING):
    batch = next(pipeline.whole_image.train_dataset(smoke_builder, config)
                 .as_numpy_iterator())
  assert batch['keypoints'].shape[1:] == (1, 17, 2)
  assert 'more than input.max_people = 1 people' in caplog.text
  assert 'extra people are dropped' in caplog.text
