"""model.dtype=bfloat16: bf16 compute, float32 parameters, state and loss."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _convolution_dtypes(jaxpr):
  """The input dtype of every convolution in a jaxpr, nested ones included."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      yield eqn.invars[0].aval.dtype
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          yield from _convolution_dtypes(inner)


@pytest.mark.parametrize('variant', ['smoke', 'smoke,hourglass', 'smoke,simple_baseline'])
def test_a_bfloat16_step_matches_float32(smoke_config, variant):
  from posejax import codecs
  from posejax import losses
  from posejax import models
  from posejax import sharding
  from posejax import train_step
  config = smoke_config(variant)
  mesh = sharding.make_mesh(types.SimpleNamespace(data=1), jax.devices()[:1])
  codec = codecs.codec_from_config(config, 17)
  size = tuple(config.input.size)
  rng = np.random.default_rng(0)
  batch = {
      'image': rng.integers(0, 256, (4, *size, 3), np.uint8),
      'keypoints': (rng.uniform(size=(4, 17, 2)) * [size[1] - 1, size[0] - 1]
                    ).astype(np.float32),
      'visibility': np.full((4, 17), 2, np.int32),
  }
  results = {}
  for dtype in ('float32', 'bfloat16'):
    model = models.build_model({**config.model, 'dtype': dtype}, 17)
    training = train_step.build_training(
        model, codec, losses.loss_from_config(config.loss), mesh, config.optim,
        num_steps=10, input_size=size)
    state = training.state
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
        state.variables, jnp.zeros((1, *size, 3)))
    # Every convolution computes in the chosen dtype; the heatmaps come out
    # float32 (posejax/models).
    assert set(_convolution_dtypes(jaxpr.jaxpr)) == {jnp.dtype(dtype)}
    assert jaxpr.out_avals[-1].dtype == jnp.float32
    state, metrics = training.step(state, jax.device_put(batch, sharding.data_sharding(mesh)))
    # ... and keeps parameters, optimizer state and BatchNorm statistics in float32.
    for leaf in jax.tree.leaves((state.params, state.opt_state, state.batch_stats)):
      if jnp.issubdtype(leaf.dtype, jnp.floating):
        assert leaf.dtype == jnp.float32
    assert metrics['loss'].dtype == jnp.float32
    results[dtype] = float(metrics['loss']), state
  (loss32, state32), (loss16, state16) = results['float32'], results['bfloat16']
  assert np.isfinite(loss16) and loss16 == pytest.approx(loss32, rel=0.05)
  # The first updates agree: same parameters after the step, to bf16 precision.
  worst = max(jax.tree.leaves(jax.tree.map(
      lambda a, b: float(jnp.abs(a - b).max()), state32.params, state16.params)))
  assert worst < 5e-3
