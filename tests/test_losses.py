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
