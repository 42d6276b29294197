"""HigherHRNet (HRNet head='higher'): structure, official layout, PyTorch parity.

The PyTorch side is tests/torch_reference.py's `TorchHigherHRNet`, the
official PoseHigherResolutionNet's structure; its random state dict goes
through the checkpoint import (`checkpoints.official`), so a passing test
checks the key mapping, the deconvolution's kernel layout and the head.
"""

from __future__ import annotations

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import models
from posejax.checkpoints import official
from posejax.models import hrnet
from posejax.models import summary
import reference_layouts


@pytest.mark.slow
@pytest.mark.parametrize('preset, listing, num_params', [
    ('higher_w32', 'higherhrnet_w32_official.txt', 28_645_331),
    ('higher_w48', 'higherhrnet_w48_official.txt', 63_827_139),
])
def test_official_listing_maps_onto_the_network(preset, listing, num_params):
  model = models.build_model({'name': 'hrnet', 'preset': preset}, 2 * 17)
  state_dict = reference_layouts.random_state_dict(listing)
  variables = official.variables_from_state_dict(state_dict, 'hrnet', model,
                                                 (512, 512))
  flat = traverse_util.flatten_dict(variables)
  assert len(flat) == len([k for k in state_dict
                           if not k.endswith('num_batches_tracked')])
  assert sum(v.size for v in jax.tree.leaves(variables['params'])) == num_params
  # ConvTranspose2d (in, out, kh, kw) -> (kh, kw, in, out).
  np.testing.assert_array_equal(
      variables['params']['deconv_layers_0_0_0']['kernel'],
      state_dict['deconv_layers.0.0.0.weight'].transpose(2, 3, 0, 1))


def test_outputs_at_a_quarter_and_a_half():
  model = hrnet.HRNet(num_keypoints=2 * 5, head='higher', stem_width=8,
                      stage1_blocks=1, widths=(8, 16), num_modules=(1,),
                      num_blocks=1, deconv_blocks=2)
  shapes = jax.eval_shape(
      lambda v, x: model.apply(v, x),
      summary.abstract_variables(model, (64, 48)),
      jax.ShapeDtypeStruct((2, 64, 48, 3), jnp.float32))
  assert [s.shape for s in shapes] == [(2, 16, 12, 10), (2, 32, 24, 5)]


def test_an_odd_channel_count_is_a_clear_error():
  with pytest.raises(ValueError, match='heatmaps and K tags'):
    hrnet.HRNet(num_keypoints=17, head='higher')


@pytest.mark.torch
def test_imported_pytorch_weights_give_pytorch_outputs():
  torch = pytest.importorskip('torch')
  from torch_reference import TorchHigherHRNet  # pylint: disable=g-import-not-at-top
  sizes = dict(stem_width=16, stage1_blocks=1, widths=(8, 16, 32),
               num_modules=(1, 1), num_blocks=1)
  torch.manual_seed(0)
  theirs = TorchHigherHRNet(5, deconv_blocks=2, **sizes)
  with torch.no_grad():  # BN statistics away from the identity
    for m in theirs.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-0.2, 0.2)
        m.running_var.uniform_(0.5, 1.5)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
  theirs.eval()
  # The reference's list wrappers add '.inner' (tests/torch_reference.py).
  state_dict = {k.replace('.inner', ''): v.numpy()
                for k, v in theirs.state_dict().items()}
  model = hrnet.HRNet(num_keypoints=10, head='higher', deconv_blocks=2, **sizes)
  variables = official.variables_from_state_dict(state_dict, 'hrnet', model,
                                                 (64, 64))
  x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype(np.float32)
  ours = model.apply(jax.tree.map(jnp.asarray, variables), jnp.asarray(x))
  with torch.no_grad():
    expected = theirs(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
  assert len(ours) == len(expected) == 2
  for a, b in zip(ours, expected):
    b = b.numpy().transpose(0, 2, 3, 1)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-4 * np.abs(b).max(), rtol=0)


@pytest.mark.slow
def test_associative_embedding_hourglass_maps_the_official_listing():
  """princeton-vl/pose-ae-train's 4-stack PoseNet (68 output channels)."""
  model = models.build_model({'name': 'ae_hourglass', 'preset': 'ae4'}, 68)
  state_dict = reference_layouts.random_state_dict('pose_ae_hourglass4.txt')
  variables = official.variables_from_state_dict(state_dict, 'ae_hourglass', model,
                                                 (512, 512))
  assert sum(v.size for v in jax.tree.leaves(variables['params'])) == 138_893_840
  np.testing.assert_array_equal(
      variables['params']['features_0_0']['low2']['low2']['low2']['low2']['conv']['kernel'],
      state_dict['features.0.0.low2.low2.low2.low2.conv.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(
      variables['params']['merge_preds_2']['conv']['conv']['bias'],
      state_dict['merge_preds.2.conv.conv.bias'])


def test_associative_embedding_hourglass_outputs_every_stack():
  model = models.build_model({'name': 'ae_hourglass', 'num_stacks': 2, 'features': 8,
                              'increase': 4, 'depth': 2}, 2 * 5)
  shapes = jax.eval_shape(
      lambda v, x: model.apply(v, x), summary.abstract_variables(model, (64, 64)),
      jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  assert [s.shape for s in shapes] == [(1, 16, 16, 10)] * 2
  with pytest.raises(ValueError, match='divisible by 16'):
    model.init(jax.random.key(0), jnp.zeros((1, 60, 64, 3)))
