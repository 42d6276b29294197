"""ImageNet backbones: every tensor of the published layouts accounted for."""

import os
import subprocess
import sys

from flax import traverse_util
import jax
import ml_collections
import numpy as np
import pytest

import dataset_fixtures
import reference_layouts
from posejax import models
from posejax.checkpoints import imagenet
from posejax.checkpoints import layouts

from conftest import REPO


def _model(name, preset, keypoints=17):
  return models.build_model(ml_collections.ConfigDict(dict(
      name=name, preset=preset)), keypoints)


@pytest.mark.parametrize('listing, name, preset, keypoints, size', [
    ('hrnet_w18_imagenet_official', 'hrnet', 'w18', 17, (256, 192)),
    ('hrnet_w32_imagenet_official', 'hrnet', 'w32', 17, (256, 192)),
    ('hrnet_w48_imagenet_official', 'hrnet', 'w48', 17, (256, 192)),
    ('hrnet_w18_imagenet_official', 'hrnet', 'v2_w18', 98, (256, 256)),
    ('resnet50_imagenet_torchvision', 'simple_baseline', 'r50', 17, (256, 192)),
    ('resnet101_imagenet_torchvision', 'simple_baseline', 'r101', 17, (256, 192)),
    ('resnet152_imagenet_torchvision', 'simple_baseline', 'r152', 17, (256, 192)),
])
@pytest.mark.slow
def test_every_tensor_of_the_imagenet_layout_is_loaded_or_named(
    listing, name, preset, keypoints, size):
  state_dict = reference_layouts.random_state_dict(listing)
  model = _model(name, preset, keypoints)
  loaded = imagenet.backbone_variables(state_dict, name, model, size)
  # Nothing silently skipped: loaded and ignored are the whole file.
  assert sorted(loaded.loaded + loaded.ignored) == sorted(state_dict)
  assert not set(loaded.loaded) & set(loaded.ignored)
  # Ignored: the classification head (and, for a pose HRNet with one output
  # branch, the last stage's other fusions), BatchNorm counters.
  head = {'hrnet': ('incre_modules.', 'downsamp_modules.', 'final_layer.',
                    'classifier.', 'stage4.'),
          'simple_baseline': ('fc.',)}[name]
  assert all(k.endswith('num_batches_tracked') or k.startswith(head)
             for k in loaded.ignored), loaded.ignored
  assert 'classifier.weight' in loaded.ignored or 'fc.weight' in loaded.ignored
  if preset == 'v2_w18':  # all four branches out: every stage4 fusion is used
    assert not any(k.startswith('stage4.') and not k.endswith('num_batches_tracked')
                   for k in loaded.ignored)
  # Kept at their initialisation: the pose head, and nothing else.
  expected_head = {'hrnet': ('final_layer.', 'head.'),
                   'simple_baseline': ('deconv_layers.', 'final_layer.')}[name]
  assert loaded.kept and all(k.startswith(expected_head) for k in loaded.kept)
  # Values arrive converted (OIHW -> HWIO) at their paths.
  conv1 = loaded.variables[('params', 'conv1', 'kernel')]
  np.testing.assert_array_equal(conv1, state_dict['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(loaded.variables[('batch_stats', 'bn1', 'var')],
                                state_dict['bn1.running_var'])


@pytest.mark.slow
def test_wrong_checkpoints_stop_with_the_keys():
  size = (256, 192)
  w48 = _model('hrnet', 'w48')
  # Another width: the mis-shaped keys are named.
  with pytest.raises(ValueError, match=r'mis-shaped keys.*conv1\.weight|stage2'):
    imagenet.backbone_variables(
        reference_layouts.random_state_dict('hrnet_w32_imagenet_official'), 'hrnet',
        w48, size)
  # Another architecture.
  with pytest.raises(ValueError, match=r'missing keys: .*stage2\.0\.branches'):
    imagenet.backbone_variables(
        reference_layouts.random_state_dict('resnet50_imagenet_torchvision'), 'hrnet',
        w48, size)
  # A pose checkpoint given as a backbone.
  w32 = _model('hrnet', 'w32')
  with pytest.raises(ValueError, match=r'no classifier\.weight.*import_torch'):
    imagenet.backbone_variables(
        reference_layouts.random_state_dict('hrnet_w32_official'), 'hrnet', w32, size)
  # A network without an ImageNet layout.
  with pytest.raises(ValueError, match='no ImageNet backbone layout'):
    imagenet.backbone_variables({}, 'hourglass', _model('hourglass', 'hg2', 16),
                                  (256, 256))


def test_files_npz_safetensors_truncated_and_missing(tmp_path):
  state_dict = reference_layouts.random_state_dict('resnet50_imagenet_torchvision')
  np.savez(tmp_path / 'r50.npz', **state_dict)
  read = imagenet.read_state_dict(str(tmp_path / 'r50.npz'))
  assert read.keys() == state_dict.keys()
  np.testing.assert_array_equal(read['layer4.2.conv3.weight'],
                                state_dict['layer4.2.conv3.weight'])
  safetensors_numpy = pytest.importorskip('safetensors.numpy')
  safetensors_numpy.save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()},
                              str(tmp_path / 'r50.safetensors'))
  read = imagenet.read_state_dict(str(tmp_path / 'r50.safetensors'))
  np.testing.assert_array_equal(read['fc.weight'], state_dict['fc.weight'])
  # Truncated.
  data = (tmp_path / 'r50.npz').read_bytes()
  (tmp_path / 'cut.npz').write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match='cannot read'):
    imagenet.read_state_dict(str(tmp_path / 'cut.npz'))
  # Missing: the path and where the weights are published.
  with pytest.raises(FileNotFoundError, match=r'nope\.pth.*torchvision.*pretrained=\'\''):
    imagenet.read_state_dict(str(tmp_path / 'nope.pth'), 'simple_baseline')


@pytest.mark.slow
def test_convert_command_writes_what_the_loader_reads(tmp_path):
  torch = pytest.importorskip('torch')
  state_dict = reference_layouts.random_state_dict('resnet50_imagenet_torchvision')
  torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()},
             tmp_path / 'resnet50.pth')
  for output in ('resnet50.npz', 'resnet50.safetensors'):
    proc = subprocess.run(
        [sys.executable, '-m', 'posejax.pretrained', f'--input={tmp_path}/resnet50.pth',
         f'--output={tmp_path}/{output}'], cwd=REPO, capture_output=True, text=True,
        timeout=120, env=dict(os.environ, JAX_PLATFORMS='cpu'))
    assert proc.returncode == 0, proc.stderr[-2000:]
    read = imagenet.read_state_dict(str(tmp_path / output))
    assert read.keys() == state_dict.keys()
    np.testing.assert_array_equal(read['layer1.0.conv1.weight'],
                                  state_dict['layer1.0.conv1.weight'])


def _smoke_imagenet_state_dict(config, seed=0):
  """A random ImageNet-layout state dict for the recipe's smoke network."""
  model = models.build_model(config.model, 17)
  abstract = traverse_util.flatten_dict(
      jax.eval_shape(model.init, jax.random.key(0),
                     jax.ShapeDtypeStruct((1, *config.input.size, 3), np.float32)))
  layout = layouts.LAYOUTS[config.model.name]
  rng = np.random.default_rng(seed)
  state_dict = {}
  for path, leaf in abstract.items():
    key = layout.key(path[1:])
    if key.startswith(('final_layer.', 'head.')):
      continue  # the classifier has no pose head
    value = rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    if value.ndim == 4:
      value = value.transpose(3, 2, 0, 1)
    state_dict[key] = value
  state_dict['classifier.weight'] = rng.standard_normal((10, 8)).astype(np.float32)
  state_dict['classifier.bias'] = np.zeros(10, np.float32)
  return state_dict


@pytest.mark.slow
def test_recipe_trains_from_an_imagenet_checkpoint_through_main(tmp_path):
  from recipe_configs import load_config
  config = load_config('hrnet_coco', 'smoke')
  state_dict = _smoke_imagenet_state_dict(config)
  np.savez(tmp_path / 'hrnet_smoke_imagenet.npz', **state_dict)
  manual_dir = tmp_path / 'coco'
  dataset_fixtures.write_coco_dataset(str(manual_dir))
  workdir = tmp_path / 'run'
  args = [sys.executable, '-m', 'posejax.main', '--config=configs/hrnet_coco.py:smoke',
          f'--workdir={workdir}', f'--config.dataset.data_dir={tmp_path}/tfds',
          f'--config.dataset.manual_dir={manual_dir}', '--config.eval.boxes=ground_truth',
          '--config.train.num_steps=1', '--config.train.checkpoint_every_steps=1']
  env = dict(os.environ, JAX_PLATFORMS='cpu', POSEJAX_KEEP_MALLOC='1')
  proc = subprocess.run(args + [f'--config.model.pretrained={tmp_path}/hrnet_smoke_imagenet.npz'],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = next(l for l in proc.stderr.splitlines() if 'Backbone from' in l)
  assert f'loaded {len(state_dict) - 2} tensors' in line
  assert 'ignored 2 classification-only tensors (classifier.*)' in line
  assert 'kept the initialisation of 2 pose-head tensors (final_layer.*)' in line
  # The step-1 parameters are the loaded ones moved by one Adam step (lr 1e-3).
  from posejax import experiment
  variables, step = experiment.load_variables(str(workdir))
  assert step == 1
  np.testing.assert_allclose(
      variables['params']['conv1']['kernel'],
      state_dict['conv1.weight'].transpose(2, 3, 1, 0), atol=2e-3)
  # A recipe whose checkpoint is missing says where to get it and how to go
  # without it, before anything is compiled.
  proc = subprocess.run(args + [f'--workdir={tmp_path}/other',
                                f'--config.model.pretrained={tmp_path}/none.pth'],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode != 0
  assert 'posejax: model.pretrained: no ImageNet checkpoint' in proc.stderr
  assert "--config.model.pretrained=''" in proc.stderr


def test_recipes_start_from_the_published_imagenet_files(monkeypatch):
  from recipe_configs import load_config
  monkeypatch.setenv('POSEJAX_PRETRAINED_DIR', '/weights')
  expected = {
      ('hrnet_coco', ''): 'hrnet_w32-36af842e.pth',
      ('hrnet_coco', 'w48,384x288'): 'hrnet_w48-8ef0771d.pth',
      ('simple_baseline_coco', ''): 'resnet50-19c8e357.pth',
      ('simple_baseline_coco', 'r101'): 'resnet101-5d3b4d8f.pth',
      ('simple_baseline_coco', 'r152'): 'resnet152-b121ed2d.pth',
      ('hrnet_wflw', ''): 'hrnetv2_w18_imagenet_pretrained.pth',
      ('hrnet_wflw', '300w'): 'hrnetv2_w18_imagenet_pretrained.pth',
      ('fashionai_champion', ''): 'resnet50-19c8e357.pth',
  }
  for (name, variant), file_name in expected.items():
    assert load_config(name, variant).model.pretrained == f'/weights/{file_name}'
  # Networks published without an ImageNet start, and every smoke variant.
  assert load_config('hourglass_mpii').model.pretrained == ''
  assert load_config('synthetic').model.pretrained == ''
  assert load_config('hrnet_coco', 'smoke').model.pretrained == ''
