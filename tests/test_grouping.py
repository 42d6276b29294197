"""Associative-embedding decoding and grouping against the official code's.

The reference is tests/reference_grouping.py, a transcription of the
official HigherHRNet group.py; both run on the same maps: people rendered
as Gaussians with one tag value each, on noise, some joints missing so that
the refinement has work.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from posejax import codecs
from posejax.codecs import grouping
from posejax.inference import predict_fn as predict_fn_lib
from reference_grouping import scene

K = 17


def _codec(size, **fields):
  return codecs.AssociativeEmbeddingCodec(input_size=size, num_keypoints=K,
                                          stride=1, decode_outputs=1,
                                          project_to_input=False, **fields)


def _posejax_people(det, tag, refine=True):
  codec = _codec(det.shape[1:], refine_missing=refine)
  combined = (jnp.asarray(det.transpose(1, 2, 0))[None],
              jnp.asarray(tag.transpose(1, 2, 0, 3))[None])
  candidates = {k: np.asarray(v)[0] for k, v in codec.decode(combined).items()}
  people = grouping.group(candidates, codec.order(), codec.detection_threshold,
                          codec.tag_threshold, codec.max_people, codec.adjust)
  pairs = grouping.missing_joints(people)
  if refine and len(pairs):
    refined = codec.refine(combined, jnp.asarray(people.mean_tags)[None],
                           jnp.asarray(pairs[None, :, 0]), jnp.asarray(pairs[None, :, 1]))
    people = grouping.fill_missing(people, pairs,
                                   {k: np.asarray(v)[0] for k, v in refined.items()})
  return people


@pytest.mark.torch
@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('refine', [False, True])
def test_same_people_as_the_official_grouping(seed, refine):
  reference = pytest.importorskip('reference_grouping')
  det, tag = scene(seed, people=1 + seed % 5)
  expected, expected_scores = reference.HeatmapParser().parse(det, tag,
                                                              refine=refine)
  people = _posejax_people(det, tag, refine=refine)
  assert len(people) == len(expected) > 0
  np.testing.assert_allclose(people.keypoints, expected[:, :, :2], atol=1e-5)
  np.testing.assert_allclose(people.scores, expected[:, :, 2], atol=1e-6)
  np.testing.assert_allclose(people.person_scores, expected_scores, atol=1e-6)


@pytest.mark.torch
def test_flip_tags_as_a_second_dimension_group_alike():
  reference = pytest.importorskip('reference_grouping')
  det, tag = scene(11, people=3)
  tag2 = np.concatenate([tag, tag + np.random.default_rng(0).normal(
      0, 0.2, tag.shape).astype(np.float32)], -1)
  expected, _ = reference.HeatmapParser().parse(det, tag2)
  people = _posejax_people(det, tag2)
  assert len(people) == len(expected)
  np.testing.assert_allclose(people.keypoints, expected[:, :, :2], atol=1e-5)


def test_people_found_with_their_tags():
  det, tag = scene(3, people=3, noise=0.0, tag_noise=0.0)
  people = _posejax_people(det, tag, refine=False)
  assert len(people) == 3
  np.testing.assert_allclose(np.sort(np.round(people.mean_tags[:, 0] / 3)), [0, 1, 2])


def test_maps_without_candidates_give_no_people():
  det = np.full((K, 32, 32), 0.05, np.float32)  # below detection_threshold
  tag = np.zeros((K, 32, 32, 1), np.float32)
  assert len(_posejax_people(det, tag)) == 0


def test_bottom_up_predict_fn_on_a_model():
  """The whole device -> host -> device path, with a stand-in network whose
  output is fixed maps."""
  det, tag = scene(5, size=(32, 32), people=2, noise=0.0, tag_noise=0.0)
  output = np.concatenate([det.transpose(1, 2, 0), tag[..., 0].transpose(1, 2, 0)],
                          -1)[None]

  class Fixed:
    dtype = jnp.float32
    normalization = 'none'

    def apply(self, variables, x, train=False):
      del variables, train
      return [jnp.broadcast_to(jnp.asarray(output), (x.shape[0], *output.shape[1:]))]

  codec = codecs.AssociativeEmbeddingCodec(input_size=(32, 32), num_keypoints=K,
                                           stride=1)
  predict = predict_fn_lib.make_bottom_up_predict_fn(Fixed(), codec)
  people = predict({}, np.zeros((2, 32, 32, 3), np.uint8))
  assert len(people) == 2 and all(len(p) == 2 for p in people)
  np.testing.assert_allclose(people[0].keypoints, people[1].keypoints)


def test_max_pool_equals_a_window_maximum():
  from posejax.codecs import embedding
  maps = np.random.default_rng(0).normal(size=(2, 9, 7, 3)).astype(np.float32)
  pooled = np.asarray(embedding.max_pool(jnp.asarray(maps), 5))
  padded = np.pad(maps, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-np.inf)
  expected = np.max([padded[:, dy:dy + 9, dx:dx + 7] for dy in range(5)
                     for dx in range(5)], axis=0)
  np.testing.assert_array_equal(pooled, expected)


@pytest.mark.slow
def test_multi_scale_of_agreeing_scales_finds_the_single_scale_people():
  """Scales whose maps agree average to the same heatmaps and repeat the
  tags: the same people as one scale; and the scaled inputs divide by 64."""
  det, tag = scene(5, size=(64, 64), people=2, noise=0.0, tag_noise=0.0)
  output = np.concatenate([det.transpose(1, 2, 0), tag[..., 0].transpose(1, 2, 0)],
                          -1)[None]

  class Fixed:  # the same maps at every input size
    dtype = jnp.float32

    def apply(self, variables, x, train=False):
      del variables, train
      return [jnp.broadcast_to(jnp.asarray(output), (x.shape[0], *output.shape[1:]))]

  # Without the refinement: its search reads tag distances, which the
  # repeated tags lengthen by sqrt(3).
  codec = codecs.AssociativeEmbeddingCodec(input_size=(64, 64), num_keypoints=K,
                                           stride=1, refine_missing=False)
  one = predict_fn_lib.make_bottom_up_predict_fn(Fixed(), codec)({}, np.zeros(
      (1, 64, 64, 3), np.uint8))[0]
  several = predict_fn_lib.make_bottom_up_predict_fn(
      Fixed(), codec, scales=(1.0, 2.0, 0.5))({}, np.zeros((1, 64, 64, 3), np.uint8))[0]
  assert len(one) == len(several) == 2
  np.testing.assert_allclose(several.keypoints, one.keypoints)
  assert several.mean_tags.shape[-1] == 3 * one.mean_tags.shape[-1]
  assert predict_fn_lib.scaled_size((512, 512), 0.75) == (384, 384)
  assert predict_fn_lib.scaled_size((512, 320), 1.5) == (768, 512)
  with pytest.raises(ValueError, match='positive scales'):
    predict_fn_lib.make_bottom_up_predict_fn(Fixed(), codec, scales=(0.0,))
