"""OpenPose's CMU body network: structure, the port's layout, PyTorch parity.

The PyTorch side is tests/torch_reference.py's `TorchOpenPoseBody`, the
structure of Hzzone/pytorch-openpose's `bodypose_model`; its random state
dict goes through the checkpoint import (`checkpoints.official`).
"""

from __future__ import annotations

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import models
from posejax.checkpoints import official
from posejax.models import openpose
from posejax.models import summary
import reference_layouts

SMALL = dict(num_stages=3, vgg_widths=(8, 8, 16, 16), cpm_widths=(16, 8),
             stage_features=8, stage1_hidden=16)


@pytest.mark.slow
def test_the_ports_listing_and_its_file_keys_map_onto_the_network():
  model = models.build_model({'name': 'openpose', 'preset': 'body_cmu'}, 19 + 38)
  state_dict = reference_layouts.random_state_dict('openpose_body_cmu')
  variables = official.variables_from_state_dict(state_dict, 'openpose', model,
                                                 (368, 368))
  assert len(traverse_util.flatten_dict(variables)) == len(state_dict) == 184
  assert sum(v.size for v in jax.tree.leaves(variables)) == 52_311_446
  # body_pose_model.pth holds the keys without their block.
  bare = {k.split('.', 1)[1]: v for k, v in state_dict.items()}
  again = official.variables_from_state_dict(bare, 'openpose', model, (368, 368))
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(
      variables['params']['model2_1']['Mconv1_stage2_L1']['kernel'],
      state_dict['model2_1.Mconv1_stage2_L1.weight'].transpose(2, 3, 1, 0))


def test_file_keys_find_their_blocks():
  assert openpose.torch_file_key('conv1_1.weight') == 'model0.conv1_1.weight'
  assert openpose.torch_file_key('conv4_4_CPM.bias') == 'model0.conv4_4_CPM.bias'
  assert (openpose.torch_file_key('conv5_3_CPM_L2.weight')
          == 'model1_2.conv5_3_CPM_L2.weight')
  assert (openpose.torch_file_key('Mconv7_stage6_L1.bias')
          == 'model6_1.Mconv7_stage6_L1.bias')
  assert openpose.torch_file_key('model0.conv1_1.weight') == 'model0.conv1_1.weight'


def test_a_truncated_or_foreign_state_dict_names_the_keys():
  model = openpose.OpenPose(num_keypoints=5 + 8, num_limbs=4, **SMALL)
  with pytest.raises(ValueError, match=r'missing keys: model0\.conv1_1\.bias.*unexpected keys: conv9'):
    official.variables_from_state_dict({'conv9.weight': np.zeros(3)}, 'openpose',
                                       model, (64, 64))


def test_every_stage_outputs_maps_then_pafs_at_an_eighth():
  model = openpose.OpenPose(num_keypoints=5 + 8, num_limbs=4, **SMALL)
  shapes = jax.eval_shape(
      lambda v, x: model.apply(v, x), summary.abstract_variables(model, (64, 48)),
      jax.ShapeDtypeStruct((2, 64, 48, 3), jnp.float32))
  assert [s.shape for s in shapes] == [(2, 8, 6, 13)] * 3


def test_channels_without_confidence_maps_are_a_clear_error():
  with pytest.raises(ValueError, match='num_limbs'):
    openpose.OpenPose(num_keypoints=38, num_limbs=19)


@pytest.mark.torch
def test_imported_pytorch_weights_give_pytorch_outputs():
  torch = pytest.importorskip('torch')
  from torch_reference import TorchOpenPoseBody  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  theirs = TorchOpenPoseBody(heatmaps=5, pafs=8, stages=3, vgg=(8, 8, 16, 16),
                             cpm=(16, 8), features=8, hidden=16).eval()
  state_dict = {k: v.numpy() for k, v in theirs.state_dict().items()}
  model = openpose.OpenPose(num_keypoints=5 + 8, num_limbs=4, **SMALL)
  variables = official.variables_from_state_dict(state_dict, 'openpose', model,
                                                 (64, 64))
  x = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
  from posejax.models import common  # pylint: disable=g-import-not-at-top
  ours = model.apply(jax.tree.map(jnp.asarray, variables),
                     common.model_inputs(model, jnp.asarray(x)))
  # The port's input: BGR / 256 - 0.5, NCHW.
  bgr = x[..., ::-1].astype(np.float32) / 256 - 0.5
  with torch.no_grad():
    expected = theirs(torch.from_numpy(bgr.transpose(0, 3, 1, 2).copy()))
  assert len(ours) == len(expected) == 3
  for t, (a, (paf, heat)) in enumerate(zip(ours, expected)):
    paf, heat = (v.numpy().transpose(0, 2, 3, 1) for v in (paf, heat))
    confidence = np.asarray(a[..., :5])
    if t == 2:  # the port's ReLU on the last confidence maps
      confidence = np.maximum(confidence, 0)
    for got, want in ((confidence, heat), (np.asarray(a[..., 5:]), paf)):
      np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=0)


def _torchvision_vgg19(widths, rng):
  """A state dict in torchvision's vgg19 layout (`features.N`, `classifier.N`),
  the widths of its four first blocks given, the fifth and classifier small."""
  state_dict, channels, index = {}, 3, 0
  for block, (convs, width) in enumerate(zip((2, 2, 4, 4, 4), (*widths, 8))):
    for _ in range(convs):
      state_dict[f'features.{index}.weight'] = rng.standard_normal(
          (width, channels, 3, 3)).astype(np.float32)
      state_dict[f'features.{index}.bias'] = rng.standard_normal(width).astype(np.float32)
      channels, index = width, index + 2  # each conv is followed by its ReLU
    index += 1  # the max-pool
  for i, (out, inp) in zip((0, 3, 6), ((16, 8 * 49), (16, 16), (1000, 16))):
    state_dict[f'classifier.{i}.weight'] = np.zeros((out, inp), np.float32)
    state_dict[f'classifier.{i}.bias'] = np.zeros((out,), np.float32)
  return state_dict


def test_the_trunk_starts_from_torchvisions_vgg19():
  from posejax.checkpoints import imagenet  # pylint: disable=g-import-not-at-top
  model = openpose.OpenPose(num_keypoints=5 + 8, num_limbs=4,
                            input_normalization='imagenet', **SMALL)
  state_dict = _torchvision_vgg19(SMALL['vgg_widths'], np.random.default_rng(0))
  loaded = imagenet.backbone_variables(state_dict, 'openpose', model, (64, 64))
  assert len(loaded.loaded) == 20  # conv1_1 ... conv4_2, weight and bias
  np.testing.assert_array_equal(
      loaded.variables[('params', 'model0', 'conv3_4', 'kernel')],
      state_dict['features.16.weight'].transpose(2, 3, 1, 0))
  assert all(k.startswith(('features.', 'classifier.')) for k in loaded.ignored)
  assert {k.split('.')[0] for k in loaded.kept} == {
      'model0', 'model1_1', 'model1_2', 'model2_1', 'model2_2', 'model3_1', 'model3_2'}
  # A pose checkpoint is no ImageNet start.
  with pytest.raises(ValueError, match='no classifier.6.weight'):
    imagenet.backbone_variables(
        {k: v for k, v in state_dict.items() if not k.startswith('classifier')},
        'openpose', model, (64, 64))
