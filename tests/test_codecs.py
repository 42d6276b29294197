import jax.numpy as jnp
import numpy as np
import pytest

from posejax import codecs
from posejax.codecs import base
from posejax.codecs import heatmap
from posejax.codecs import offsets as offset_voting
from posejax import keypoints as keypoints_lib


def test_render_decode_round_trip_within_quarter_pixel():
  rng = np.random.default_rng(0)
  codec = codecs.HeatmapCodec(input_size=(128, 96), stride=4, sigma=2.0)
  h, w = codec.output_size
  # Random sub-pixel positions, in heatmap pixels, away from the border.
  hm_xy = rng.uniform([2, 2], [w - 3, h - 3], size=(64, 17, 2)).astype(np.float32)
  keypoints = heatmap.heatmap_to_input(jnp.asarray(hm_xy), codec.stride)
  visibility = jnp.full((64, 17), 2)
  heatmaps, weights = codec.encode(keypoints, visibility)
  assert heatmaps.shape == (64, h, w, 17)
  np.testing.assert_array_equal(weights, 1.0)
  decoded, scores = codec.decode(heatmaps)
  err_hm = np.abs(np.asarray(decoded) - np.asarray(keypoints)) / codec.stride
  assert err_hm.max() <= 0.25 + 1e-5
  # The quarter step must actually be taken: plain argmax would err up to 0.5.
  assert err_hm.mean() < 0.15
  assert np.all(np.asarray(scores) > 0.8)


def test_peak_is_at_the_keypoint_for_integer_positions():
  heatmaps, _ = heatmap.render_heatmaps(
      jnp.array([[[4 * 5 + 1.5, 4 * 3 + 1.5]]]), jnp.array([[2]]), (8, 10), 4, 1.5)
  # Input pixel 21.5 is the centre of heatmap pixel 5 with stride 4.
  assert np.unravel_index(np.argmax(heatmaps[0, :, :, 0]), (8, 10)) == (3, 5)
  assert heatmaps[0, 3, 5, 0] == pytest.approx(1.0)


def test_weights_zero_for_unlabelled_and_off_map_joints():
  keypoints = jnp.array([[[10.0, 10.0], [10.0, 10.0], [-5.0, 10.0], [10.0, 70.0]]])
  visibility = jnp.array([[2, 0, 2, 1]])
  heatmaps, weights = heatmap.render_heatmaps(keypoints, visibility, (16, 12), 4, 2.0)
  np.testing.assert_array_equal(weights, [[1, 0, 0, 0]])
  assert float(heatmaps[..., 1:].max()) == 0.0
  assert float(heatmaps[..., 0].max()) > 0.5


def test_flip_heatmaps_is_an_involution_and_matches_flipped_keypoints():
  spec = keypoints_lib.COCO
  rng = np.random.default_rng(1)
  input_size = (64, 48)
  keypoints = jnp.asarray(rng.uniform([4, 4], [44, 60], size=(2, 17, 2)), jnp.float32)
  visibility = jnp.full((2, 17), 2)
  maps, _ = heatmap.render_heatmaps(keypoints, visibility, (16, 12), 4, 2.0)
  twice = heatmap.flip_heatmaps(heatmap.flip_heatmaps(maps, spec.flip_index),
                               spec.flip_index)
  np.testing.assert_array_equal(twice, maps)
  # Flipping the maps equals rendering the flipped keypoints: no pixel shift.
  fk, fv = base.flip_keypoints(keypoints, visibility, input_size[1], spec.flip_index)
  flipped_maps, _ = heatmap.render_heatmaps(fk, fv, (16, 12), 4, 2.0)
  np.testing.assert_allclose(heatmap.flip_heatmaps(maps, spec.flip_index),
                             flipped_maps, atol=1e-5)
  kk, vv = base.flip_keypoints(fk, fv, input_size[1], spec.flip_index)
  np.testing.assert_allclose(kk, keypoints, atol=1e-5)
  # Left and right really swap: left_shoulder's map moves to right_shoulder.
  ls, rs = spec.index('left_shoulder'), spec.index('right_shoulder')
  np.testing.assert_allclose(fk[:, rs, 0], input_size[1] - 1 - keypoints[:, ls, 0])


def test_codec_rejects_input_not_divisible_by_stride():
  with pytest.raises(ValueError, match='stride'):
    codecs.HeatmapCodec(input_size=(130, 96), stride=4)


def test_dark_refinement_recovers_sub_pixel_positions():
  rng = np.random.default_rng(2)
  codec = codecs.HeatmapCodec(input_size=(128, 96), stride=4, sigma=2.0, refine='dark')
  h, w = codec.output_size
  hm_xy = rng.uniform([3, 3], [w - 4, h - 4], size=(16, 17, 2)).astype(np.float32)
  keypoints = heatmap.heatmap_to_input(jnp.asarray(hm_xy), codec.stride)
  heatmaps, _ = codec.encode(keypoints, jnp.full((16, 17), 2))
  decoded, _ = codec.decode(heatmaps)
  err_hm = np.abs(np.asarray(decoded) - np.asarray(keypoints)) / codec.stride
  # Far better than the quarter step's 0.25 bound (the blur's zero padding
  # biases peaks near the border slightly).
  assert err_hm.max() < 0.08
  assert err_hm.mean() < 0.02
  with pytest.raises(ValueError, match='refine'):
    heatmap.decode_heatmaps(heatmaps, 4, refine='half')


def test_shift_heatmaps_right_moves_columns_as_the_official_code():
  # One 2x4 map per channel; channel 1 is channel 0 negated.
  maps = jnp.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
  maps = jnp.stack([maps, -maps], axis=-1)[None]  # (1, 2, 4, 2)
  shifted = heatmap.shift_heatmaps_right(maps)
  # output[..., 1:] = input[..., :-1]; column 0 keeps its own values.
  np.testing.assert_array_equal(shifted[0, :, :, 0], [[1, 1, 2, 3], [5, 5, 6, 7]])
  np.testing.assert_array_equal(shifted[0, :, :, 1], -shifted[0, :, :, 0])


def test_flip_test_is_exact_here_and_the_shift_moves_it_one_heatmap_pixel():
  # An ideal network: its heatmaps of a crop and of the mirrored crop are
  # the rendered targets. Flip test without the shift decodes the keypoints
  # exactly as the plain maps do; the official shift moves the mirrored half
  # one heatmap pixel right, so the average decodes further right.
  spec = keypoints_lib.COCO
  codec = codecs.HeatmapCodec(input_size=(64, 48), stride=4, sigma=2.0, refine='dark')
  rng = np.random.default_rng(3)
  keypoints = jnp.asarray(rng.uniform([12, 12], [36, 52], (4, 17, 2)), jnp.float32)
  visibility = jnp.full((4, 17), 2)
  plain, _ = codec.encode(keypoints, visibility)
  fk, fv = base.flip_keypoints(keypoints, visibility, 48, spec.flip_index)
  mirrored, _ = codec.encode(fk, fv)
  back = heatmap.flip_heatmaps(mirrored, spec.flip_index)
  exact, _ = codec.decode(0.5 * (plain + back))
  reference, _ = codec.decode(plain)
  np.testing.assert_allclose(exact, reference, atol=1e-4)
  shifted, _ = codec.decode(0.5 * (plain + heatmap.shift_heatmaps_right(back)))
  dx = np.asarray(shifted - reference)
  # About half a heatmap pixel (2 input pixels) to the right, y untouched.
  assert np.all((dx[..., 0] > 1.0) & (dx[..., 0] < 3.0)), dx[..., 0]
  assert abs(dx[..., 0].mean() - 2.0) < 0.3
  np.testing.assert_allclose(dx[..., 1], 0.0, atol=1e-3)


def test_official_grid_puts_heatmap_pixel_j_on_input_pixel_stride_j():
  # The official code's target for a joint at input x is centred on heatmap
  # pixel x / 4 (rounded there); on the centred grid the same pixel is
  # input 4 j + 1.5.
  keypoints = jnp.array([[[4 * 5.0, 4 * 3.0]]])
  official, _ = heatmap.render_heatmaps(keypoints, jnp.array([[2]]), (8, 10), 4,
                                       1.5, grid='official')
  assert np.unravel_index(np.argmax(official[0, :, :, 0]), (8, 10)) == (3, 5)
  assert official[0, 3, 5, 0] == pytest.approx(1.0)
  for grid, expected in (('official', [20.0, 12.0]), ('centred', [21.5, 13.5])):
    decoded, _ = heatmap.decode_heatmaps(official, 4, 'quarter', grid=grid)
    np.testing.assert_allclose(decoded[0, 0], expected, atol=1e-5)


def test_official_grid_round_trip_and_the_official_flip_shift():
  spec = keypoints_lib.COCO
  # Maps large enough that DARK's zero-padded blur (radius 3 sigma) does
  # not reach the peaks.
  codec = codecs.HeatmapCodec(input_size=(256, 192), stride=4, sigma=2.0,
                              refine='dark', grid='official')
  rng = np.random.default_rng(4)
  keypoints = jnp.asarray(rng.uniform([40, 40], [150, 210], (4, 17, 2)), jnp.float32)
  visibility = jnp.full((4, 17), 2)
  plain, _ = codec.encode(keypoints, visibility)
  decoded, _ = codec.decode(plain)
  np.testing.assert_allclose(decoded, keypoints, atol=0.05)
  # The mirrored crop's maps, flipped back, land 0.75 heatmap pixel (3 input
  # pixels) left on this grid; the official one-pixel shift leaves 1 input
  # pixel to the right.
  fk, fv = base.flip_keypoints(keypoints, visibility, 192, spec.flip_index)
  back = heatmap.flip_heatmaps(codec.encode(fk, fv)[0], spec.flip_index)
  unshifted, _ = codec.decode(back)
  np.testing.assert_allclose(unshifted[..., 0] - keypoints[..., 0], -3.0, atol=0.1)
  shifted, _ = codec.decode(heatmap.shift_heatmaps_right(back))
  np.testing.assert_allclose(shifted[..., 0] - keypoints[..., 0], 1.0, atol=0.1)
  np.testing.assert_allclose(shifted[..., 1], keypoints[..., 1], atol=0.05)


def test_unknown_grid_is_a_clear_error():
  with pytest.raises(ValueError, match='codec.grid'):
    codecs.HeatmapCodec(input_size=(64, 48), grid='corner')


def test_udp_grid_round_trip_and_exact_flip():
  """UDP: heatmap pixels in pixel spacings, rendered and read back exactly."""
  rng = np.random.default_rng(3)
  codec = codecs.HeatmapCodec(input_size=(256, 192), stride=4, sigma=2.0,
                              refine='dark', grid='udp')
  h, w = codec.output_size
  # The first and last heatmap pixels sit on the first and last input pixels.
  corners = heatmap.heatmap_to_input(jnp.asarray([[0.0, 0.0], [w - 1.0, h - 1.0]]),
                                    4, 'udp', (h, w))
  np.testing.assert_allclose(corners, [[0, 0], [191, 255]], atol=1e-4)
  keypoints = jnp.asarray(rng.uniform([16, 16], [176, 240], (16, 17, 2)), jnp.float32)
  visibility = jnp.full((16, 17), 2)
  heatmaps, _ = codec.encode(keypoints, visibility)
  decoded, _ = codec.decode(heatmaps)
  error = np.abs(np.asarray(decoded) - np.asarray(keypoints))
  assert error.max() < 0.08 * 4 and error.mean() < 0.02 * 4  # as DARK on the centred grid
  # A mirrored heatmap is the heatmap of the mirrored input: no shift needed.
  flip_index = keypoints_lib.get_spec('coco').flip_index
  mirrored, mirrored_vis = base.flip_keypoints(keypoints, visibility, 192, flip_index)
  of_mirrored, _ = codec.encode(mirrored, mirrored_vis)
  np.testing.assert_allclose(heatmap.flip_heatmaps(of_mirrored, flip_index), heatmaps,
                             atol=1e-5)


def test_udp_grid_needs_the_udp_crop():
  import ml_collections
  config = ml_collections.ConfigDict(dict(
      codec=dict(name='heatmap', stride=4, sigma=2.0, refine='dark', grid='udp',
                 stage_sigmas=()),
      input=dict(size=(64, 48), crop='centred'), eval=dict(flip_shift=False)))
  with pytest.raises(ValueError, match="UDP's heatmap grid and crop go together"):
    codecs.codec_from_config(config, 17)
  config.input.crop = 'udp'
  assert codecs.codec_from_config(config, 17).grid == 'udp'


def _as_output(codec, targets, confidence=8.0):
  """Targets in the network's output layout: confident logits, exact offsets."""
  disks, offsets = targets
  return codec.join(jnp.where(disks > 0, confidence, -confidence), offsets)


@pytest.mark.slow
def test_offset_voting_round_trip_recovers_sub_pixel_positions():
  rng = np.random.default_rng(4)
  codec = codecs.OffsetVotingCodec(input_size=(128, 96), stride=4, radius=3.0)
  h, w = codec.output_size
  hm_xy = rng.uniform([1, 1], [w - 2, h - 2], size=(8, 17, 2)).astype(np.float32)
  keypoints = heatmap.heatmap_to_input(jnp.asarray(hm_xy), codec.stride)
  (disks, offsets), weights = codec.encode(keypoints, jnp.full((8, 17), 2))
  assert disks.shape == (8, h, w, 17) and offsets.shape == (8, h, w, 17, 2)
  # A disk of radius 3 holds about 28 pixels; offsets point at the keypoint.
  assert 20 <= float(disks[0, ..., 0].sum()) <= 37
  output = _as_output(codec, (disks, offsets))
  assert output.shape == (8, h, w, 3 * 17)
  decoded, scores = codec.decode(output)
  error = np.abs(np.asarray(decoded) - np.asarray(keypoints)) / codec.stride
  assert error.max() < 0.1  # heatmap pixels
  assert np.all(np.asarray(scores) > 0.99)
  # Exact targets cost only the cross-entropy of the confident logits.
  exact = codec.joint_losses(output, (disks, offsets), weights)
  wrong = codec.joint_losses(output.at[..., 17:].add(0.5), (disks, offsets), weights)
  assert float(exact.max()) < 1e-3 and float(wrong.min()) > 0.05


def test_voting_is_exact_on_a_synthetic_field():
  """Every pixel of a region votes for one point; stray votes elsewhere
  weigh less; the decoded position is the point."""
  h, w, radius = 16, 12, 4.0
  target = np.array([6.3, 9.7], np.float32)  # x, y in heatmap pixels
  ys, xs = np.mgrid[:h, :w].astype(np.float32)
  offsets = np.stack([target[0] - xs, target[1] - ys], -1) / radius
  probabilities = np.where(np.hypot(xs - 6, ys - 10) < 5, 0.9, 0.0)
  # A stray group far away, voting for (1, 1) with lower confidence.
  stray = (xs < 3) & (ys < 3)
  probabilities[stray] = 0.5
  offsets[stray] = np.stack([1 - xs[stray], 1 - ys[stray]], -1) / radius
  xy = offset_voting.vote(jnp.asarray(probabilities)[None, ..., None],
                   jnp.asarray(offsets)[None, :, :, None, :], radius)
  np.testing.assert_allclose(np.asarray(xy)[0, 0], target, atol=1e-4)


def test_offset_flip_is_an_involution_and_matches_flipped_keypoints():
  rng = np.random.default_rng(5)
  codec = codecs.OffsetVotingCodec(input_size=(64, 48), stride=4, radius=2.5)
  flip_index = keypoints_lib.get_spec('coco').flip_index
  keypoints = jnp.asarray(rng.uniform([4, 4], [44, 60], (2, 17, 2)), jnp.float32)
  visibility = jnp.full((2, 17), 2)
  targets, _ = codec.encode(keypoints, visibility)
  output = _as_output(codec, targets)
  np.testing.assert_allclose(codec.flip(codec.flip(output, flip_index), flip_index),
                             output, atol=1e-6)
  mirrored, mirrored_vis = base.flip_keypoints(keypoints, visibility, 48, flip_index)
  of_mirrored, _ = codec.encode(mirrored, mirrored_vis)
  np.testing.assert_allclose(codec.flip(_as_output(codec, of_mirrored), flip_index),
                             output, atol=1e-5)
  # Flip test: merging an output with that of the mirrored input changes nothing.
  merged = codec.merge_flipped(output, _as_output(codec, of_mirrored), flip_index)
  np.testing.assert_allclose(merged, output, atol=1e-5)
