"""Tests for HRNetV2 (the concat head of HRNet-Facial-Landmark-Detection)."""

from __future__ import annotations

import functools

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import models
from posejax.models import hrnet
import reference_layouts

# Key, shape, dtype and kind of every entry of the official
# HRNet-Facial-Landmark-Detection HRNetV2-W18 (WFLW, 98 landmarks) state dict.
_REFERENCE = 'hrnetv2_w18_face_official'

NARROW = dict(widths=(8, 16, 32), num_modules=(1, 1), num_blocks=1,
              stem_width=16, stage1_blocks=1, head='concat',
              fuse_upsample='bilinear')


@functools.cache
def _abstract_variables(num_keypoints: int):
  model = hrnet.HRNet(num_keypoints=num_keypoints,
                      **hrnet.HRNET_PRESETS['v2_w18'])
  return jax.eval_shape(model.init, jax.random.key(0),
                        jnp.zeros((1, 256, 256, 3)))


def _num_elements(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _torch_shape(shape):
  return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape


@pytest.mark.slow
@pytest.mark.parametrize('num_keypoints,expected', [(98, 9_662_528),
                                                    (68, 9_654_398)])
def test_parameter_count_matches_official(num_keypoints, expected):
  # Counted on the official code (lib/models/hrnet.py, WFLW / 300W configs).
  params = _abstract_variables(num_keypoints)['params']
  assert _num_elements(params) == expected
  # Head: 270 -> 270 conv with bias, BN, 270 -> K conv with bias.
  assert params['head_0']['kernel'].shape == (1, 1, 270, 270)
  assert params['head_0']['bias'].shape == (270,)
  assert params['head_3']['kernel'].shape == (1, 1, 270, num_keypoints)
  assert 'final_layer' not in params


def test_names_map_to_official_keys():
  official = {key: shape for key, (shape, _, _)
              in reference_layouts.read_listing(_REFERENCE).items()
              if not key.endswith('num_batches_tracked')}
  variables = _abstract_variables(98)
  ours = {}
  for collection in ('params', 'batch_stats'):
    for path, x in traverse_util.flatten_dict(variables[collection]).items():
      ours[hrnet.torch_state_dict_key(path)] = _torch_shape(x.shape)
  assert sorted(set(ours) - set(official)) == []
  assert sorted(set(official) - set(ours)) == []
  assert ours == official


def test_output_is_one_map_at_stride_4():
  model = hrnet.HRNet(num_keypoints=98, **hrnet.HRNET_PRESETS['v2_w18'])
  outputs = jax.eval_shape(model.apply, _abstract_variables(98),
                           jax.ShapeDtypeStruct((2, 256, 256, 3), jnp.float32))
  assert len(outputs) == 1
  assert outputs[0].shape == (2, 64, 64, 98)
  assert outputs[0].dtype == jnp.float32


def test_single_head_is_unchanged():
  # Pose HRNet keeps its names: no head_*, and its last module fuses into
  # branch 0 only.
  model = hrnet.HRNet(num_keypoints=17, widths=(8, 16, 32), num_modules=(1, 1),
                      num_blocks=1, stem_width=16, stage1_blocks=1)
  params = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, 64, 48, 3)))['params']
  assert 'final_layer' in params and 'head_0' not in params
  assert not any(k.startswith('fuse_layers_1') for k in params['stage3_0'])


def test_bad_head_or_upsampling_fails_at_construction():
  with pytest.raises(ValueError, match='head'):
    hrnet.HRNet(num_keypoints=98, head='concatenate')
  with pytest.raises(ValueError, match='fuse_upsample'):
    hrnet.HRNet(num_keypoints=98, fuse_upsample='bicubic')


def test_build_model_preset():
  model = models.build_model(dict(name='hrnet', preset='v2_w18'), 68)
  assert model.head == 'concat' and model.fuse_upsample == 'bilinear'
  assert model.widths == (18, 36, 72, 144)


def test_narrow_forward_uses_every_branch():
  model = hrnet.HRNet(num_keypoints=5, **NARROW)
  # 40x40 is not divisible by 16: bilinear fusion resizes to the exact size
  # of each branch, as the original's F.interpolate(size=...).
  x = jax.random.normal(jax.random.key(0), (2, 40, 40, 3))
  abstract = jax.eval_shape(model.init, jax.random.key(0), x)
  variables = reference_layouts.random_variables(abstract)
  params = variables['params']
  assert params['head_0']['kernel'].shape == (1, 1, 56, 56)
  # The last module fuses into every branch (the head reads all of them).
  assert {'fuse_layers_1_0_0', 'fuse_layers_2_1_0', 'fuse_layers_0_2'} <= set(
      params['stage3_0'])
  apply = jax.jit(model.apply)
  (a,) = apply(variables, x)
  assert a.shape == (2, 10, 10, 5) and a.dtype == jnp.float32
  assert np.all(np.isfinite(a))
  # The lowest-resolution branch reaches the output directly via the head.
  params = jax.tree.map(lambda p: p, params)
  last = params['stage3_0']['branches_2_0']['bn2']
  params['stage3_0']['branches_2_0']['bn2'] = {
      'scale': last['scale'], 'bias': last['bias'] + 1.0}
  (b,) = apply({**variables, 'params': params}, x)
  assert float(jnp.abs(a - b).max()) > 1e-3 * float(jnp.abs(a).max())


def test_bilinear_upsampling_follows_pixel_centres():
  # align_corners=False: output pixel i samples input (i + 0.5) / 2 - 0.5,
  # clamped at the borders; a ramp stays a ramp inside.
  x = jnp.arange(4.0).reshape(1, 4, 1, 1) * jnp.ones((1, 4, 3, 1))
  y = hrnet._upsample_bilinear(x, (8, 6))
  np.testing.assert_allclose(
      y[0, :, 0, 0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3], atol=1e-6)
  assert y.shape == (1, 8, 6, 1)
