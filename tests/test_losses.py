import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import codecs
from posejax import losses
from posejax import train_step


def test_masked_mse_ignores_joints_of_weight_zero():
  target = jnp.zeros((1, 4, 3, 2))
  pred = target.at[0, 1, 1, 0].set(2.0).at[0, 2, 2, 1].set(5.0)
  # Joint 1 is masked: only joint 0's error counts, halved and averaged
  # over the 4 * 3 pixels of its map.
  loss = losses.heatmap_mse_per_joint(pred, target, jnp.array([[1.0, 0.0]]))
  np.testing.assert_allclose(loss, [[0.5 * 4.0 / 12, 0.0]])


def test_every_stage_is_supervised_with_its_weight():
  codec = codecs.HeatmapCodec(input_size=(8, 8), stride=4)
  target = jnp.zeros((1, 2, 2, 1))
  weight = jnp.ones((1, 1))
  stages = [jnp.ones((1, 2, 2, 1)), 2 * jnp.ones((1, 2, 2, 1))]
  per_stage = train_step.stage_losses(codec, stages, target, weight)
  loss = losses.Loss(stage_weights=(1.0, 0.5))(per_stage)
  np.testing.assert_allclose(float(loss), 0.5 * 1 + 0.5 * 0.5 * 4)
  with pytest.raises(ValueError, match='2 stages'):
    losses.Loss(stage_weights=(1.0,))(per_stage)


def test_heatmaps_of_another_stride_are_a_clear_error():
  codec = codecs.HeatmapCodec(input_size=(64, 48), stride=4)
  with pytest.raises(ValueError, match='codec.stride'):
    codec.joint_losses(jnp.zeros((1, 8, 6, 3)), jnp.zeros((1, 16, 12, 3)),
                       jnp.ones((1, 3)))


def test_hard_keypoint_mining_keeps_exactly_the_k_largest():
  joint = jnp.asarray([[0.1, 0.9, 0.3, 0.5],
                       [0.05, 0.02, 0.8, 0.01]])
  # Per instance: the 2 largest of each row.
  assert float(losses.hard_keypoint_mean(joint, 2)) == pytest.approx(
      np.mean([0.9, 0.5, 0.8, 0.05]))
  # Over the batch: the 2 x 2 largest of all 8.
  assert float(losses.hard_keypoint_mean(joint, 2, 'batch')) == pytest.approx(
      np.mean([0.9, 0.8, 0.5, 0.3]))
  # Off, or k >= K: every keypoint.
  for k in (0, 4, 9):
    assert float(losses.hard_keypoint_mean(joint, k)) == pytest.approx(float(joint.mean()))
  # Gradients reach the selected keypoints only.
  grad = jax.grad(lambda j: losses.hard_keypoint_mean(j, 1))(joint)
  np.testing.assert_allclose(grad, [[0, 0.5, 0, 0], [0, 0, 0.5, 0]])
  with pytest.raises(ValueError, match='ohkm_scope'):
    losses.Loss(ohkm_topk=2, ohkm_scope='image')


def test_the_loss_mines_each_stage():
  target = jnp.zeros((1, 2, 2, 3))
  weight = jnp.ones((1, 3))
  stage = jnp.zeros((1, 2, 2, 3)).at[..., 0].set(1.0).at[..., 2].set(2.0)
  joint = losses.heatmap_mse_per_joint(stage, target, weight)
  plain = losses.Loss()([joint])
  mined = losses.Loss(ohkm_topk=1)([joint, joint])
  assert float(plain) == pytest.approx((0.5 + 0.5 * 4) / 3)
  assert float(mined) == pytest.approx(2 * 0.5 * 4)


def test_only_the_chosen_outputs_are_mined():
  joint = jnp.asarray([[0.1, 0.9, 0.3, 0.5]])
  every, top = float(joint.mean()), 0.9
  assert float(losses.Loss(ohkm_topk=1, ohkm_stages=(-1,))([joint, joint, joint])) == (
      pytest.approx(2 * every + top))
  assert float(losses.Loss(ohkm_topk=1, ohkm_stages=(0, 2))([joint, joint, joint])) == (
      pytest.approx(2 * top + every))
  # Validation losses mine nothing.
  assert float(losses.Loss(ohkm_topk=1, ohkm_stages=(0,)).every_keypoint()([joint])) == (
      pytest.approx(every))
  with pytest.raises(ValueError, match='ohkm_stages has index 3'):
    losses.Loss(ohkm_topk=1, ohkm_stages=(3,))([joint, joint])


def test_each_output_is_scored_against_its_own_sigma():
  codec = codecs.HeatmapCodec(input_size=(64, 48), stride=4, sigma=1.0,
                              stage_sigmas=(3.0, 2.0, 1.0))
  keypoints = jnp.asarray([[[20.0, 30.0], [10.0, 12.0]]])
  targets, weights = codec.encode(keypoints, jnp.full((1, 2), 2))
  assert len(targets) == 3
  plain = codecs.HeatmapCodec(input_size=(64, 48), stride=4, sigma=3.0)
  np.testing.assert_array_equal(targets[0], plain.encode(keypoints, jnp.full((1, 2), 2))[0])
  # Wider Gaussians hold more mass; each output is exact against its own.
  assert float(targets[0].sum()) > float(targets[1].sum()) > float(targets[2].sum())
  per_output = codec.stage_losses(list(targets), targets, weights)
  assert all(float(j.max()) == 0.0 for j in per_output)
  swapped = codec.stage_losses([targets[2], targets[1], targets[0]], targets, weights)
  assert float(swapped[0].min()) > 0 and float(swapped[1].max()) == 0.0
  # The decoded output is the last, at `sigma`.
  np.testing.assert_array_equal(codec.ideal_output(targets), targets[2])
  with pytest.raises(ValueError, match='3 sigmas but the network returns 2'):
    codec.stage_losses(list(targets[:2]), targets, weights)
  with pytest.raises(ValueError, match='codec.sigma=2.0'):
    codecs.HeatmapCodec(input_size=(64, 48), sigma=2.0, stage_sigmas=(3.0, 1.0))


def test_linear_schedule_decays_to_zero_after_the_warm_up():
  import ml_collections  # pylint: disable=g-import-not-at-top
  optim = ml_collections.ConfigDict(dict(learning_rate=1.0, warmup_steps=10,
                                         schedule='linear', decay_steps=(),
                                         decay_factor=0.1))
  schedule = train_step.make_schedule(optim, 110)
  assert [float(schedule(s)) for s in (0, 5, 10, 60, 110)] == pytest.approx(
      [0.0, 0.5, 1.0, 0.5, 0.0])
