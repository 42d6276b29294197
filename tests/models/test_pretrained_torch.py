"""A backbone loaded from a classification state dict computes PyTorch's features.

The PyTorch modules are those of the equivalence tests (the official
structures); their state dicts, less the pose head and plus a classifier,
stand for the ImageNet checkpoints. After loading, the pose head keeps its
initialisation; with that head copied into the PyTorch module, both networks
compute the same maps, so the backbone features are the same.
"""

import jax
import numpy as np
import pytest

from posejax.checkpoints import imagenet
from posejax.models import hrnet
from posejax.models import simple_baseline

torch = pytest.importorskip('torch')

import test_torch_equivalence_hrnet as hrnet_reference  # pylint: disable=g-import-not-at-top
import test_torch_equivalence_sb_hg as resnet_reference  # pylint: disable=g-import-not-at-top

pytestmark = pytest.mark.torch

TOLERANCE = 1e-4


def _classification_state_dict(module, head_prefixes, classifier):
  """The module's state dict as numpy, without its pose head, with a classifier."""
  state_dict = {k.replace('.inner', ''): v.detach().numpy().copy()
                for k, v in module.state_dict().items()
                if not k.startswith(head_prefixes)}
  rng = np.random.default_rng(0)
  for key, shape in classifier.items():
    state_dict[key] = rng.standard_normal(shape).astype(np.float32)
  return state_dict


def _check(model, module, name, key_fn, axes_fn, head_prefixes, classifier, size):
  resnet_reference._randomise_batch_norms(module, seed=5)
  module.eval()
  abstract = jax.eval_shape(model.init, jax.random.key(0),
                            np.zeros((1, *size, 3), np.float32))
  initial = resnet_reference._random_flax_variables(abstract, seed=6)
  state_dict = _classification_state_dict(module, head_prefixes, classifier)
  loaded = imagenet.backbone_variables(state_dict, name, model, size)
  assert set(classifier) <= set(loaded.ignored)
  variables = imagenet.with_backbone(initial, loaded)
  # The pose head keeps its initialisation.
  head_modules = [k for k in variables['params']
                  if k.startswith(tuple(p.rstrip('.') for p in head_prefixes))]
  assert head_modules
  for key in head_modules:
    jax.tree.map(np.testing.assert_array_equal, variables['params'][key],
                 initial['params'][key])
  # The same head in PyTorch, then the same maps.
  head = {k: v for k, v in resnet_reference._flax_to_torch(
      variables, key_fn, axes_fn).items() if k.startswith(head_prefixes)}
  missing, _ = module.load_state_dict(head, strict=False)
  assert not [k for k in head if k in missing]
  x = resnet_reference._images((2, *size, 3), seed=7)
  ours = model.apply(variables, x)
  resnet_reference._assert_close(ours[-1:], resnet_reference._run_torch(module, x))
  # And the maps depend on the loaded backbone: the initial one gives others.
  other = model.apply(initial, x)[-1]
  assert float(np.abs(np.asarray(other) - np.asarray(ours[-1])).max()) > 10 * TOLERANCE


@pytest.mark.slow
def test_hrnet_backbone_from_a_cls_hrnet_state_dict():
  sizes = dict(stem_width=16, stage1_blocks=2, widths=(8, 16, 32), num_modules=(1, 2),
               num_blocks=2)
  torch.manual_seed(0)
  _check(hrnet.HRNet(num_keypoints=5, **sizes),
         hrnet_reference.TorchPoseHRNet(5, **sizes), 'hrnet', hrnet.torch_state_dict_key,
         lambda path: (3, 2, 0, 1) if path[-1] == 'kernel' else None,
         ('final_layer.',), {'classifier.weight': (10, 64), 'classifier.bias': (10,),
                             'incre_modules.0.0.conv1.weight': (4, 8, 1, 1)},
         (64, 48))


@pytest.mark.slow
def test_resnet_backbone_from_a_torchvision_state_dict():
  kwargs = dict(width=4, deconv_features=(8, 6, 10), deconv_kernels=(4, 3, 2))
  torch.manual_seed(0)
  _check(simple_baseline.SimpleBaseline(num_keypoints=5, **kwargs),
         resnet_reference.TorchPoseResNet(simple_baseline.RESNET_STAGE_BLOCKS[50],
                                          num_joints=5, **kwargs),
         'simple_baseline', simple_baseline.torch_state_dict_key,
         simple_baseline.torch_weight_axes, ('deconv_layers.', 'final_layer.'),
         {'fc.weight': (10, 128), 'fc.bias': (10,)}, (64, 64))
