"""The shared config base, variant parsing, epochs and smoke variants."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from posejax import config_lib
from posejax import models
from recipe_configs import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every recipe with each of its variants (without smoke).
RECIPES = [
    ('synthetic', ''), ('synthetic', 'simple_baseline'), ('synthetic', 'hourglass'),
    ('synthetic', 'cpm'),
    ('hrnet_coco', ''), ('hrnet_coco', 'w48,384x288,official'),
    ('simple_baseline_coco', ''), ('simple_baseline_coco', 'r152,official'),
    ('hourglass_mpii', ''), ('hourglass_mpii', 'hg2'),
    ('cpm_fashionai', ''), ('cpm_fashionai', 'all'),
    ('hourglass_facial_keypoints', ''),
    ('hrnet_wflw', ''), ('hrnet_wflw', '300w'),
]


def test_parse_variants_splits_and_checks():
  choices = ('r50', 'r101', 'official', 'smoke')
  assert config_lib.parse_variants(None, 'configs/x.py', choices) == set()
  assert config_lib.parse_variants('', 'configs/x.py', choices) == set()
  assert config_lib.parse_variants('r101, official,', 'configs/x.py', choices) == {
      'r101', 'official'}
  with pytest.raises(ValueError) as error:
    config_lib.parse_variants('r101,w64', 'configs/x.py', choices)
  # The file, the culprit and what the file knows.
  assert all(s in str(error.value) for s in ('configs/x.py', "'w64'", "'smoke'"))
  assert "'r101'" not in str(error.value).split('known')[0]


def test_parse_variants_rejects_two_of_an_exclusive_group():
  choices = ('r50', 'r101', 'r152', 'official')
  depths = ('r50', 'r101', 'r152')
  given = config_lib.parse_variants('r152,official', 'configs/x.py', choices, [depths])
  assert config_lib.choose(given, depths, 'r50') == 'r152'
  assert config_lib.choose(frozenset({'official'}), depths, 'r50') == 'r50'
  with pytest.raises(ValueError, match=r"'r101' and 'r50'.*configs/x\.py"):
    config_lib.parse_variants('r50,official,r101', 'configs/x.py', choices, [depths])


@pytest.mark.parametrize('name, arg, culprit', [
    ('hrnet_coco', 'w64', 'w64'),
    ('simple_baseline_coco', 'r50,r101', 'r101'),
    ('synthetic', 'cpm,hourglass', 'hourglass'),
    ('cpm_fashionai', 'dress,all', 'all'),
    ('hrnet_wflw', 'wflw,300w', '300w'),
    ('hourglass_mpii', 'hg8,hg2', 'hg2'),
    ('hourglass_facial_keypoints', 'hg2', 'hg2'),
])
def test_every_recipe_rejects_bad_variants_naming_its_file(name, arg, culprit):
  with pytest.raises(ValueError, match=culprit) as error:
    load_config(name, arg)
  assert f'configs/{name}.py' in str(error.value)


def test_steps_for_epochs_keeps_the_last_short_batch():
  assert config_lib.steps_for_epochs(1, 32, 16) == 2
  assert config_lib.steps_for_epochs(1, 33, 16) == 3
  assert config_lib.steps_for_epochs(210, config_lib.COCO_TRAIN_INSTANCES, 128) == 245_910
  assert config_lib.steps_for_epochs(170, config_lib.COCO_TRAIN_INSTANCES, 128) == 199_070
  assert config_lib.steps_for_epochs(1, config_lib.COCO_TRAIN_INSTANCES, 96) == 1_561
  assert config_lib.steps_for_epochs(60, 7_500, 16) == 28_140


@pytest.mark.parametrize('name, variant', RECIPES)
def test_every_recipe_has_every_base_field(name, variant):
  base = config_lib.flatten(config_lib.base_config())
  config = config_lib.flatten(load_config(name, variant))
  # The model section is the network's own; the rest starts from the base.
  assert {k for k in base if not k.startswith('model.')} <= set(config)
  assert {'model.name', 'model.dtype'} <= set(config)
  assert config['model.name'] in models.NETWORKS


@pytest.mark.parametrize('name', sorted(models.NETWORKS))
def test_every_network_entry_is_consistent(name):
  network = models.NETWORKS[name]
  fields = set(models.model_fields(network.module))
  assert set(network.smoke) <= fields
  assert all(set(p) <= fields for p in network.presets.values())
  assert set(network.preset_inputs) <= set(network.presets)
  (height, width), keypoints = network.usual()
  assert min(height, width, keypoints) > 0
  model = models.build_model(dict(name=name, **network.smoke), keypoints)
  assert isinstance(model, network.module)


# What a smoke variant may change in a recipe (config_lib.smoke).
SMOKE_FIELDS = {
    'input.size', 'input.shuffle_buffer', 'optim.warmup_steps', 'optim.decay_steps',
    'train.global_batch_size', 'train.num_steps', 'train.log_every_steps',
    'train.checkpoint_every_steps', 'train.eval_every_steps',
    'train.early_stopping.every_steps', 'eval.batch_size', 'eval.num_images_to_draw',
    'model.pretrained',  # no ImageNet network is as narrow
}


@pytest.mark.parametrize('name, variant', [r for r in RECIPES if r[0] != 'synthetic'])
def test_smoke_narrows_the_recipe_and_keeps_the_rest(name, variant):
  full = load_config(name, variant)
  smoke = load_config(name, ','.join(filter(None, (variant, 'smoke'))))
  narrow = models.NETWORKS[full.model.name].smoke
  assert {k: smoke.model[k] for k in narrow} == dict(narrow)
  flat_full, flat_smoke = config_lib.flatten(full), config_lib.flatten(smoke)
  changed = {k for k in flat_smoke if flat_smoke[k] != flat_full.get(k)}
  assert changed - {f'model.{k}' for k in narrow} <= SMOKE_FIELDS
  assert smoke.model.get('preset') == full.model.get('preset')
  assert smoke.model.pretrained == ''
  assert (smoke.train.global_batch_size, smoke.eval.batch_size) == (2, 2)
  assert smoke.optim.warmup_steps == 0  # so that one step moves every weight
  assert smoke.input.shuffle_buffer == 16 and smoke.eval.num_images_to_draw == 2
  assert 0 < smoke.train.num_steps <= 10
  # The schedule keeps its shape: the decays inside the shorter run.
  assert len(smoke.optim.decay_steps) == len(full.optim.decay_steps)
  assert all(0 < s < smoke.train.num_steps for s in smoke.optim.decay_steps)
  # The heatmaps still fit: the stride divides the smaller input.
  assert all(s % smoke.codec.stride == 0 for s in smoke.input.size)


def test_smoke_inputs_are_those_the_recipes_were_tested_at():
  sizes = {name: tuple(load_config(name, 'smoke').input.size) for name in (
      'hrnet_coco', 'simple_baseline_coco', 'hourglass_mpii', 'cpm_fashionai',
      'hourglass_facial_keypoints', 'hrnet_wflw')}
  assert sizes == {
      'hrnet_coco': (64, 48), 'simple_baseline_coco': (64, 64),
      'hourglass_mpii': (32, 32), 'cpm_fashionai': (32, 32),
      'hourglass_facial_keypoints': (16, 16), 'hrnet_wflw': (32, 32)}


def test_synthetic_smoke_keeps_its_data_and_narrows_any_network():
  hrnet = load_config('synthetic', 'smoke')
  assert hrnet.dataset.synthetic.to_dict() == dict(
      num_train=96, num_val=24, seed=0, image_size=(128, 128))
  assert tuple(hrnet.input.size) == (64, 48)
  assert (hrnet.train.global_batch_size, hrnet.train.num_steps) == (8, 6)
  assert tuple(hrnet.model.widths) == (8, 16) and hrnet.model.stem_width == 16
  assert load_config('synthetic', 'hrnet,smoke').to_dict() == hrnet.to_dict()
  for network in ('simple_baseline', 'hourglass', 'cpm'):
    config = load_config('synthetic', f'{network},smoke')
    full = load_config('synthetic', network)
    assert config.model.name == network
    assert config.dataset.to_dict() == hrnet.dataset.to_dict()
    assert config.codec.to_dict() == full.codec.to_dict()
    narrow = models.NETWORKS[network].smoke
    assert {k: config.model[k] for k in narrow} == dict(narrow)


def test_quickstart_keeps_its_recipe():
  c = load_config('synthetic')
  assert (c.seed, tuple(c.input.size), c.train.num_steps, c.train.global_batch_size) == (
      0, (128, 96), 3000, 16)
  assert c.input.cache_decoded_images and c.codec.refine == 'dark'
  assert (c.optim.schedule, c.optim.warmup_steps) == ('cosine', 50)


def _main(tmp_path, *args):
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
             TF_ENABLE_ONEDNN_OPTS='0', POSEJAX_KEEP_MALLOC='1')
  proc = subprocess.run(
      [sys.executable, '-m', 'posejax.main', f'--workdir={tmp_path}', *args],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  # What TensorFlow's C++ logging may print on import is not ours.
  lines = [l for l in proc.stderr.splitlines() if l.strip() and not (
      re.match(r'[IWEF]\d{4} ', l) or l.startswith('WARNING: All log messages'))]
  assert len(lines) == 1, proc.stderr[-3000:]
  assert lines[0].startswith('posejax: ') and '\\' not in lines[0], lines[0]
  return lines[0]


def test_unknown_variant_is_one_line(tmp_path):
  message = _main(tmp_path, '--config=configs/synthetic.py:foo')
  assert "'foo'" in message and 'configs/synthetic.py' in message
  assert "'simple_baseline'" in message and "'smoke'" in message


def test_misspelt_override_is_one_line_with_the_suggestion(tmp_path):
  message = _main(tmp_path, '--config=configs/synthetic.py:smoke',
                  '--config.train.num_step=5')
  assert "'num_step'" in message and '--config.train.num_step' in message
  assert '"num_steps"' in message


def test_missing_config_file_is_one_line(tmp_path):
  message = _main(tmp_path, '--config=configs/no_such_recipe.py:smoke')
  assert "'configs/no_such_recipe.py'" in message
  assert 'configs/synthetic.py' in message  # what to pass instead
