"""Every registered codec through the same checks (posejax/codecs/base.py).

The cases come from `codecs.CODECS` (and, for the heatmap family, each of its
grids and refinements): a codec added to the table is checked here without
a line of this file changing. Top-down codecs see one person per row
(B, K, 2); bottom-up ones (`Codec.bottom_up`) every person of an image
(B, P, K, 2), and decode through grouping into people.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import codecs
from posejax import config_lib
from posejax import keypoints as keypoints_lib
from posejax import losses
from posejax import train_step
from posejax.codecs import base
from posejax.codecs import heatmap

INPUT = (128, 96)
SPEC = keypoints_lib.get_spec('coco')


def _cases():
  cases = []
  for name in codecs.CODECS:
    if name == 'heatmap':
      cases += [(name, dict(grid=g, refine=r)) for g in heatmap.GRIDS
                for r in heatmap.REFINES]
      # A target per supervised output (CPN, MSPN): the per-output maps
      # flow through every check (tests/test_losses.py checks each output
      # meets its own sigma).
      cases.append((name, dict(stage_sigmas=(2.0, 2.0))))
    else:
      cases.append((name, {}))
  return cases


def _codec(name, fields) -> base.Codec:
  config = config_lib.base_config()
  config.input.size = INPUT
  config.codec.update(name=name, **fields)
  if config.codec.grid == 'udp':
    config.input.crop = 'udp'
  return codecs.codec_from_config(config, 17)


def _keypoints(codec, seed=0, n=4):
  """Keypoints in input pixels, three sigmas of the default Gaussian (six
  output pixels) or more from the border, where no map is truncated."""
  h, w = codec.output_size
  stride = INPUT[0] / h
  rng = np.random.default_rng(seed)
  xy = rng.uniform([6, 6], [w - 7, h - 7], (n, SPEC.num_keypoints, 2))
  return jnp.asarray((xy + 0.5) * stride - 0.5, jnp.float32)


def _is_bottom_up(case):
  return _codec(*case).bottom_up


ALL_CASES = _cases()
CASES = [c for c in ALL_CASES if not _is_bottom_up(c)]
BOTTOM_UP_CASES = [c for c in ALL_CASES if _is_bottom_up(c)]
_ids = lambda cases: [f'{n}-{"-".join(map(str, f.values()))}' if f else n
                      for n, f in cases]


@pytest.fixture(params=CASES, ids=_ids(CASES))
def codec(request):
  return _codec(*request.param)


@pytest.fixture(params=BOTTOM_UP_CASES, ids=_ids(BOTTOM_UP_CASES))
def bottom_up_codec(request):
  return _codec(*request.param)


def test_every_entry_is_a_codec(codec):
  assert isinstance(codec, base.Codec)
  assert isinstance(codec.channels, int) and codec.channels >= 1
  h, w = codec.output_size
  assert INPUT[0] % h == 0 and INPUT[1] % w == 0


def test_round_trip_within_the_stated_bound(codec):
  keypoints = _keypoints(codec)
  visibility = jnp.full(keypoints.shape[:2], 2)
  targets, weights = codec.encode(keypoints, visibility)
  np.testing.assert_array_equal(weights, 1.0)
  output = codec.ideal_output(targets)
  h, w = codec.output_size
  assert output.shape == (4, h, w, SPEC.num_keypoints * codec.channels)
  decoded, scores = codec.decode(output)
  assert decoded.shape == keypoints.shape and scores.shape == keypoints.shape[:2]
  error = np.abs(np.asarray(decoded) - np.asarray(keypoints))
  assert error.max() <= codec.round_trip_bound + 1e-4
  assert np.all(np.asarray(scores) > 0.5)


def test_unlabelled_and_off_map_keypoints_get_no_weight(codec):
  keypoints = _keypoints(codec, n=1)
  keypoints = keypoints.at[0, 1].set(jnp.asarray([-20.0, 5.0]))
  visibility = jnp.full(keypoints.shape[:2], 2).at[0, 0].set(0)
  _, weights = codec.encode(keypoints, visibility)
  assert weights.shape == (1, SPEC.num_keypoints)
  np.testing.assert_array_equal(weights[0, :2], 0.0)
  np.testing.assert_array_equal(weights[0, 2:], 1.0)


def test_losses_are_per_instance_and_keypoint_and_vanish_on_exact_targets(codec):
  keypoints = _keypoints(codec)
  targets, weights = codec.encode(keypoints, jnp.full(keypoints.shape[:2], 2))
  exact = codec.ideal_output(targets)
  other, _ = codec.encode(_keypoints(codec, seed=1), jnp.full(keypoints.shape[:2], 2))
  wrong = codec.ideal_output(other)
  stages = train_step.stage_losses(codec, [exact, wrong], targets, weights)
  for joint in stages:
    assert joint.shape == (4, SPEC.num_keypoints)
  assert float(stages[0].max()) < 1e-3
  assert float(stages[1].min()) > float(stages[0].max())
  # Masked keypoints cost nothing, and the reduced loss has gradients.
  masked = codec.joint_losses(wrong, targets, jnp.zeros_like(weights))
  np.testing.assert_array_equal(masked, 0.0)
  grad = jax.grad(lambda o: losses.Loss()(
      [codec.joint_losses(o, targets, weights)]))(wrong)
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0


def test_flip_merge_of_consistent_outputs_changes_nothing(codec):
  if codec.grid == 'official':
    pytest.skip('the official grid is not mirror-symmetric: its flip test '
                'needs eval.flip_shift (posejax/codecs/heatmap.py)')
  keypoints = _keypoints(codec)
  visibility = jnp.full(keypoints.shape[:2], 2)
  output = codec.ideal_output(codec.encode(keypoints, visibility)[0])
  mirrored = base.flip_keypoints(keypoints, visibility, INPUT[1], SPEC.flip_index)
  of_mirrored = codec.ideal_output(codec.encode(*mirrored)[0])
  # Mirroring back is the inverse of mirroring, both ways round.
  np.testing.assert_allclose(
      codec.merge_flipped(output, of_mirrored, SPEC.flip_index), output, atol=1e-5)
  np.testing.assert_allclose(
      codec.merge_flipped(of_mirrored, output, SPEC.flip_index), of_mirrored,
      atol=1e-5)
  # Keypoints mirrored twice are the keypoints.
  twice = base.flip_keypoints(*mirrored, INPUT[1], SPEC.flip_index)
  np.testing.assert_allclose(twice[0], keypoints, atol=1e-5)


def test_maps_for_pictures(codec):
  keypoints = _keypoints(codec)
  output = codec.ideal_output(
      codec.encode(keypoints, jnp.full(keypoints.shape[:2], 2))[0])
  maps = codec.maps(output)
  assert maps.shape == (4, *codec.output_size, SPEC.num_keypoints)
  assert maps.dtype == jnp.float32


def test_outputs_of_another_size_are_a_clear_error(codec):
  keypoints = _keypoints(codec)
  targets, weights = codec.encode(keypoints, jnp.full(keypoints.shape[:2], 2))
  h, w = codec.output_size
  wrong = jnp.zeros((4, h // 2, w // 2, SPEC.num_keypoints * codec.channels))
  with pytest.raises(ValueError, match='codec.stride'):
    codec.joint_losses(wrong, targets, weights)


# ---------------------------------------------------------------- bottom-up

# A standing person in COCO's keypoint order, in units of its height (the
# anatomical left on the image right, as facing the camera).
_FIGURE = np.array([
    [0.0, -0.45], [0.04, -0.48], [-0.04, -0.48], [0.08, -0.46], [-0.08, -0.46],
    [0.14, -0.32], [-0.14, -0.32], [0.2, -0.14], [-0.2, -0.14], [0.22, 0.02],
    [-0.22, 0.02], [0.09, 0.02], [-0.09, 0.02], [0.1, 0.25], [-0.1, 0.25],
    [0.1, 0.48], [-0.1, 0.48]], np.float32)


def _people(codec, seed=0, n=2):
  """(n, 2, K, 2): two people per image, one in each half of the input:
  the figure above at 70-90 px tall, its joints moved up to 3 px, well
  inside the input."""
  del codec
  rng = np.random.default_rng(seed)
  height = rng.uniform(70, 90, (n, 2, 1, 1))
  centre = np.stack([rng.uniform(22, 26, (n, 2)) + np.asarray([0, INPUT[1] / 2]),
                     rng.uniform(60, 68, (n, 2))], -1)[:, :, None]
  jitter = rng.uniform(-3, 3, (n, 2, SPEC.num_keypoints, 2))
  return jnp.asarray(_FIGURE * height + centre + jitter, jnp.float32)


def _group(codec, outputs, flip_index=None, flipped=None):
  combined = codec.combine(outputs)
  if flipped is not None:
    combined = codec.merge_flipped(combined, codec.combine(flipped), flip_index)
  candidates = jax.device_get(codec.decode(combined))
  found = []
  for i in range(len(candidates['value'])):
    people = codec.group({k: v[i] for k, v in candidates.items()})
    found.append(dataclasses.replace(people, keypoints=np.asarray(codec.to_input(
        people.keypoints, combined[0].shape[1:3]))))
  return found


def test_bottom_up_round_trip_finds_every_person(bottom_up_codec):
  codec = bottom_up_codec
  people = _people(codec)
  visibility = jnp.full(people.shape[:3], 2)
  targets, weights = codec.encode(people, visibility)
  assert weights.shape == people.shape[:3]
  output = codec.ideal_output(targets)
  h, w = codec.output_size
  assert output.shape == (2, h, w, codec.output_channels(SPEC.num_keypoints))
  for image, found in zip(np.asarray(people), _group(codec, [output])):
    assert len(found) == 2
    # Each found person is one of the image's, every keypoint within bound.
    order = np.argsort(found.keypoints[:, 0, 0])
    error = np.abs(found.keypoints[order] - image)
    assert error.max() <= codec.round_trip_bound + 1e-4
    assert np.all(found.scores > 0.5)


def test_bottom_up_losses_vanish_on_exact_targets(bottom_up_codec):
  codec = bottom_up_codec
  people = _people(codec)
  visibility = jnp.full(people.shape[:3], 2)
  targets, weights = codec.encode(people, visibility)
  exact = codec.ideal_output(targets)
  wrong = codec.ideal_output(codec.encode(_people(codec, seed=1), visibility)[0])
  stages = train_step.stage_losses(codec, [exact, wrong], targets, weights)
  # Per image and keypoint (associative embedding) or channel (PAFs).
  columns = (SPEC.num_keypoints if _has_tags(codec)
             else codec.output_channels(SPEC.num_keypoints))
  for joint in stages:
    assert joint.shape == (2, columns)
  assert float(stages[0].max()) < 1e-3
  assert float(stages[1].max()) > 10 * float(stages[0].max())
  if _has_tags(codec):
    # An output without tags (a higher-resolution head) is scored on its
    # heatmaps at its own resolution.
    h, w = codec.output_size
    finer = jnp.zeros((2, 2 * h, 2 * w, SPEC.num_keypoints))
    assert codec.joint_losses(finer, targets, weights).shape == (2, SPEC.num_keypoints)
  grad = jax.grad(lambda o: losses.Loss()(
      [codec.joint_losses(o, targets, weights)]))(wrong)
  # The tags or the fields after the first 17 channels learn too.
  assert np.all(np.isfinite(grad)) and float(jnp.abs(grad[..., 17:]).max()) > 0


def _has_tags(codec):
  return hasattr(codec, 'tag_maps')


def test_bottom_up_ignored_regions_cost_nothing(bottom_up_codec):
  codec = bottom_up_codec
  people = _people(codec)
  visibility = jnp.full(people.shape[:3], 2)
  wrong = codec.ideal_output(codec.encode(_people(codec, seed=1), visibility)[0])
  everywhere = jnp.ones((2, *INPUT), jnp.uint8)
  targets, weights = codec.encode(people, visibility, everywhere)
  # Tags are no maps: their loss does not depend on the mask.
  maps_only = wrong[..., :SPEC.num_keypoints] if _has_tags(codec) else wrong
  np.testing.assert_allclose(codec.joint_losses(maps_only, targets, weights), 0.0,
                             atol=1e-7)


def test_bottom_up_flip_merge_of_consistent_outputs_finds_the_same_people(
    bottom_up_codec):
  codec = bottom_up_codec
  people = _people(codec)
  visibility = jnp.full(people.shape[:3], 2)
  output = codec.ideal_output(codec.encode(people, visibility)[0])
  mirrored = base.flip_keypoints(people, visibility, INPUT[1], SPEC.flip_index)
  of_mirrored = codec.ideal_output(codec.encode(*mirrored)[0])
  plain = _group(codec, [output])
  merged = _group(codec, [output], SPEC.flip_index, [of_mirrored])
  for a, b in zip(plain, merged):
    assert len(a) == len(b) == 2
    np.testing.assert_allclose(np.sort(a.keypoints, 0), np.sort(b.keypoints, 0),
                               atol=1e-4)


def test_bottom_up_maps_for_pictures(bottom_up_codec):
  codec = bottom_up_codec
  people = _people(codec)
  output = codec.ideal_output(codec.encode(people, jnp.full(people.shape[:3], 2))[0])
  assert codec.maps(output).shape == (2, *codec.output_size, SPEC.num_keypoints)
  if _has_tags(codec):
    assert codec.tag_maps(output).shape == (2, *codec.output_size, SPEC.num_keypoints)
  else:
    limbs = (codec.output_channels(SPEC.num_keypoints) - len(codec.layout.parts) - 1) // 2
    assert codec.field_maps(output).shape == (2, *codec.output_size, limbs, 2)


def test_bottom_up_outputs_that_do_not_divide_the_input_are_a_clear_error(
    bottom_up_codec):
  codec = bottom_up_codec
  people = _people(codec)
  targets, weights = codec.encode(people, jnp.full(people.shape[:3], 2))
  with pytest.raises(ValueError, match='does not divide the input'):
    codec.joint_losses(
        jnp.zeros((2, 7, 5, codec.output_channels(SPEC.num_keypoints))), targets,
        weights)


def test_bottom_up_multi_scale_merge_of_one_scale_finds_the_same_people(
    bottom_up_codec):
  codec = bottom_up_codec
  people = _people(codec)
  output = codec.ideal_output(codec.encode(people, jnp.full(people.shape[:3], 2))[0])
  combined = codec.combine([output])
  twice = codec.merge_scales([combined, combined])
  for a, b in zip(_decoded(codec, combined), _decoded(codec, twice)):
    assert len(a) == len(b) == 2
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-4)


def _decoded(codec, combined):
  candidates = jax.device_get(codec.decode(combined))
  return [codec.group({k: v[i] for k, v in candidates.items()})
          for i in range(len(candidates['value']))]
