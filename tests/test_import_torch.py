"""Tests for posejax.checkpoints.official (official PyTorch state dicts -> posejax)."""

from __future__ import annotations

from flax import traverse_util
import jax
import numpy as np
import pytest

from posejax.checkpoints import layouts
from posejax.checkpoints import official
from posejax.models import hourglass
from posejax.models import hrnet
from posejax.models import simple_baseline
from posejax.models import summary
import reference_layouts


@pytest.fixture(scope='module')
def w32_state_dict():
  return reference_layouts.random_state_dict('hrnet_w32_official.txt')


@pytest.fixture(scope='module')
def w32_model():
  return hrnet.HRNet(num_keypoints=17, **hrnet.HRNET_PRESETS['w32'])


def test_official_hrnet_w32_layout_maps_every_key(w32_state_dict, w32_model):
  variables = official.variables_from_state_dict(
      w32_state_dict, 'hrnet', w32_model, (256, 192))
  flat = traverse_util.flatten_dict(variables)
  # Every entry but the num_batches_tracked buffers became a variable.
  consumed = [k for k in w32_state_dict if not k.endswith('num_batches_tracked')]
  assert len(flat) == len(consumed)
  assert len(w32_state_dict) == 1754
  assert sum(v.size for v in jax.tree.leaves(variables['params'])) == 28_536_113
  # Values land where they belong, with kernels in HWIO.
  np.testing.assert_array_equal(
      variables['params']['conv1']['kernel'],
      w32_state_dict['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(
      variables['params']['stage3_3']['fuse_layers_2_0_1']['bn']['scale'],
      w32_state_dict['stage3.3.fuse_layers.2.0.1.1.weight'])
  np.testing.assert_array_equal(
      variables['batch_stats']['layer1_0']['downsample']['bn']['var'],
      w32_state_dict['layer1.0.downsample.1.running_var'])
  np.testing.assert_array_equal(
      variables['params']['final_layer']['bias'],
      w32_state_dict['final_layer.bias'])


@pytest.mark.slow
@pytest.mark.parametrize('listing, name, model, size, num_params', [
    ('simple_baseline_r50_official.txt', 'simple_baseline',
     simple_baseline.SimpleBaseline(
         num_keypoints=17, **simple_baseline.SIMPLE_BASELINE_PRESETS['r50']),
     (256, 192), 33_999_697),
    ('hourglass2_princeton.txt', 'hourglass',
     hourglass.StackedHourglass(num_keypoints=16,
                                **hourglass.HOURGLASS_PRESETS['hg2']),
     (256, 256), 6_570_400),
    ('hourglass8_princeton.txt', 'hourglass',
     hourglass.StackedHourglass(num_keypoints=16,
                                **hourglass.HOURGLASS_PRESETS['hg8']),
     (256, 256), 25_434_112),
])
def test_official_layouts_map_every_key(listing, name, model, size, num_params):
  state_dict = reference_layouts.random_state_dict(listing)
  unused = {key for key, (_, _, kind)
            in reference_layouts.read_listing(listing).items()
            if kind == 'param_unused'}
  variables = official.variables_from_state_dict(
      state_dict, name, model, size)
  flat = traverse_util.flatten_dict(variables)
  consumed = [k for k in state_dict
              if not k.endswith('num_batches_tracked') and k not in unused]
  assert len(flat) == len(consumed)
  assert sum(v.size for v in jax.tree.leaves(variables['params'])) == num_params
  if name == 'simple_baseline':
    # Transposed convolutions: torch (in, out, kh, kw) -> (kh, kw, in, out).
    np.testing.assert_array_equal(
        variables['params']['deconv_layers_3']['kernel'],
        state_dict['deconv_layers.3.weight'].transpose(2, 3, 0, 1))
  else:
    assert unused  # the original's idle skip layers are ignored, not used


def test_wrapper_prefix_is_stripped(w32_state_dict, w32_model):
  wrapped = {f'module.{k}': v for k, v in w32_state_dict.items()}
  variables = official.variables_from_state_dict(
      wrapped, 'hrnet', w32_model, (256, 192))
  np.testing.assert_array_equal(variables['params']['final_layer']['bias'],
                                w32_state_dict['final_layer.bias'])


@pytest.mark.parametrize('change, message', [
    (lambda sd: sd.pop('stage4.2.branches.3.3.bn2.running_mean'),
     'missing keys: stage4.2.branches.3.3.bn2.running_mean'),
    (lambda sd: sd.__setitem__('final_layer.weight',
                               np.zeros((16, 32, 1, 1), np.float32)),
     'mis-shaped keys (converted != expected): final_layer.weight'),
    (lambda sd: sd.__setitem__('head.extra.weight', np.zeros(3, np.float32)),
     'unexpected keys: head.extra.weight'),
])
def test_bad_state_dict_names_the_key(w32_state_dict, w32_model, change,
                                      message):
  state_dict = dict(w32_state_dict)
  change(state_dict)
  with pytest.raises(ValueError) as info:
    official.variables_from_state_dict(state_dict, 'hrnet', w32_model,
                                       (256, 192))
  assert message in str(info.value)


def test_unknown_model_is_a_clear_error(w32_model):
  with pytest.raises(ValueError, match='No PyTorch layout for model'):
    official.variables_from_state_dict({}, 'resnet9000', w32_model,
                                       (256, 192))


def _state_dict_of(variables, layout) -> dict[str, np.ndarray]:
  """Our variables in the official layout (the converter's inverse)."""
  state_dict = {}
  for path, value in traverse_util.flatten_dict(variables).items():
    value = np.asarray(value)
    if value.ndim == 4:
      value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    state_dict[layout.key(path[1:])] = value
  return state_dict


@pytest.mark.slow
def test_pth_file_becomes_a_checkpoint_that_eval_and_train_load(
    smoke_config, tmp_path):
  torch = pytest.importorskip('torch')
  from posejax import experiment
  from posejax import models
  from posejax import sharding
  from posejax import train_step

  config = smoke_config('smoke')
  model = models.build_model(config.model, 17)
  size = tuple(config.input.size)
  variables = jax.tree.map(
      lambda s: np.random.default_rng(1).standard_normal(s.shape).astype(
          np.float32), summary.abstract_variables(model, size))
  state_dict = _state_dict_of(variables, layouts.LAYOUTS['hrnet'])
  path = tmp_path / 'official.pth'
  # As the official repositories save them: tensors, one wrapper prefix.
  torch.save({'state_dict': {f'module.{k}': torch.from_numpy(v)
                             for k, v in state_dict.items()}}, path)

  workdir = tmp_path / 'run'
  official.import_checkpoint(config, str(path), str(workdir))
  loaded, step = experiment.load_variables(str(workdir))
  assert step == 0
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)

  # The training loop resumes from it (step 0, the config's optimizer).
  tx, _ = train_step.make_optimizer(config.optim, config.train.num_steps)
  mesh = sharding.make_mesh(config.mesh)
  state = train_step.create_train_state(model, tx, jax.random.key(0, impl='rbg'),
                                        size, mesh)
  state = experiment.restore_latest(
      experiment.checkpoint_manager(str(workdir), 2), state)
  assert int(state.step) == 0
  jax.tree.map(np.testing.assert_array_equal, state.params, variables['params'])

  with pytest.raises(FileExistsError, match='already holds checkpoints'):
    official.import_checkpoint(config, str(path), str(workdir))


@pytest.mark.slow
def test_openpose_file_keys_import_for_a_bottom_up_config(smoke_config, tmp_path):
  """body_pose_model.pth's layout (keys without their block) through the
  command's path: the network gets the PAF codec's channels (COCO-18 maps
  and 19 limbs' fields), not one per keypoint."""
  torch = pytest.importorskip('torch')
  import recipe_configs
  from posejax import experiment
  from posejax.models import openpose
  config = recipe_configs.load_config('synthetic_openpose', 'smoke')
  config.dataset.data_dir = smoke_config('smoke').dataset.data_dir
  config.model.batch_norm = False  # the CMU layout has none
  model = openpose.OpenPose(num_keypoints=19 + 38, **{
      k: v for k, v in config.model.to_dict().items()
      if k not in ('name', 'dtype', 'preset', 'pretrained')})
  variables = jax.tree.map(
      lambda s: np.random.default_rng(1).standard_normal(s.shape).astype(np.float32),
      summary.abstract_variables(model, tuple(config.input.size)))
  state_dict = _state_dict_of(variables, layouts.LAYOUTS['openpose'])
  path = tmp_path / 'body_pose_model.pth'
  torch.save({k.split('.', 1)[1]: torch.from_numpy(v) for k, v in state_dict.items()},
             path)
  official.import_checkpoint(config, str(path), str(tmp_path / 'run'))
  loaded, _ = experiment.load_variables(str(tmp_path / 'run'))
  jax.tree.map(np.testing.assert_array_equal, loaded['params'], variables['params'])


def test_a_missing_checkpoint_file_names_the_flag(smoke_config, tmp_path):
  with pytest.raises(FileNotFoundError, match='--checkpoint: no file at .*nowhere.pth'):
    official.import_checkpoint(smoke_config('smoke'), str(tmp_path / 'nowhere.pth'),
                               str(tmp_path / 'run'))
