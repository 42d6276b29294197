"""The asymmetric dilated stacked hourglass (FashionAI winner's layout)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax import models
from posejax.checkpoints import imagenet


def _abstract(model, size=(256, 256)):
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *size, 3)))


@pytest.mark.parametrize('preset, stacks, params', [
    ('r50_1stack', 1, 10_230_152),
    ('r50_3stack', 3, 11_482_136),
])
def test_outputs_per_stack_and_parameter_count(preset, stacks, params):
  # FashionAI's 24 keypoints with the offset-voting codec: 3 channels each.
  model = models.build_model(dict(name='asymmetric_hourglass', preset=preset), 72)
  variables = _abstract(model)
  assert sum(x.size for x in jax.tree.leaves(variables['params'])) == params
  outputs = jax.eval_shape(lambda v, x: model.apply(v, x), variables,
                           jnp.zeros((2, 256, 256, 3)))
  assert [o.shape for o in outputs] == [(2, 64, 64, 72)] * stacks
  assert all(o.dtype == jnp.float32 for o in outputs)


@pytest.mark.slow
def test_the_encoder_stays_at_an_eighth_with_dilated_convolutions():
  """64 -> 32 -> 32 -> 32 for a 256 input: layer3 and layer4 dilate."""
  model = models.build_model(dict(name='asymmetric_hourglass', num_stacks=1), 3)
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), _abstract(model))
  _, state = model.apply(variables, jnp.zeros((1, 256, 256, 3)), train=False,
                         capture_intermediates=True, mutable=['intermediates'])
  sides = {name: value['__call__'][0].shape[1]
           for name, value in state['intermediates'].items()
           if name.startswith('layer') and name.endswith('_0')}
  assert sides == {'layer1_0': 64, 'layer2_0': 32, 'layer3_0': 32, 'layer4_0': 32}
  # The 3x3 convs of layer3 (6 blocks) dilate by 2, those of layer4 (3) by 4.
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x))(variables,
                                                          jnp.zeros((1, 256, 256, 3)))
  dilations = [tuple(e.params['rhs_dilation']) for e in _equations(jaxpr.jaxpr)
               if e.primitive.name == 'conv_general_dilated']
  assert dilations.count((2, 2)) == 6 and dilations.count((4, 4)) == 3


def _equations(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      inner = getattr(param, 'jaxpr', param)
      if hasattr(inner, 'eqns'):
        yield from _equations(inner)


def test_the_encoder_starts_from_an_imagenet_resnet50():
  import reference_layouts
  state_dict = reference_layouts.random_state_dict('resnet50_imagenet_torchvision')
  model = models.build_model(dict(name='asymmetric_hourglass', preset='r50_3stack'), 72)
  loaded = imagenet.backbone_variables(state_dict, 'asymmetric_hourglass', model,
                                       (256, 256))
  assert sorted(loaded.loaded + loaded.ignored) == sorted(state_dict)
  # conv1 .. layer3 load; layer4 (narrower here) and fc are named as ignored.
  assert {k.split('.')[0] for k in loaded.loaded} == {'conv1', 'bn1', 'layer1',
                                                      'layer2', 'layer3'}
  assert {k.split('.')[0] for k in loaded.ignored
          if not k.endswith('num_batches_tracked')} == {'layer4', 'fc'}
  assert all(k.startswith(('layer4', 'decoder_', 'stack', 'head', 'merge_'))
             for k in loaded.kept)
  np.testing.assert_array_equal(
      loaded.variables[('params', 'layer3_5', 'conv2', 'kernel')],
      state_dict['layer3.5.conv2.weight'].transpose(2, 3, 1, 0))
