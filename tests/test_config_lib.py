"""The shared config base, variant parsing, epochs and smoke variants."""

from __future__ import annotations

import ast
import glob
import os
import re
import subprocess
import sys

from absl import flags
import ml_collections
from ml_collections import config_flags
import pytest

from posejax import config_lib
from posejax import models
import recipe_configs
from recipe_configs import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every recipe with every combination of its variants (without smoke).
RECIPES = recipe_configs.recipes(every=True)


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


# An unknown variant of every recipe, and two of each exclusive group.
BAD_VARIANTS = [(name, 'w64', 'w64') for name in recipe_configs.NAMES] + [
    (name, f'{group[0]},{group[-1]}', group[-1]) for name in recipe_configs.NAMES
    for group in recipe_configs.exclusive(name)]


@pytest.mark.parametrize('name, arg, culprit', BAD_VARIANTS)
def test_every_recipe_rejects_bad_variants_naming_its_file(name, arg, culprit):
  with pytest.raises(ValueError, match=culprit) as error:
    load_config(name, arg)
  assert f'configs/{name}.py' in str(error.value)


@pytest.mark.parametrize('name', recipe_configs.NAMES)
def test_every_recipe_states_its_variants(name):
  module = recipe_configs.load_module(name)
  assert isinstance(module.VARIANTS, tuple) and 'smoke' in module.VARIANTS
  assert len(set(module.VARIANTS)) == len(module.VARIANTS)
  for group in recipe_configs.exclusive(name):
    assert set(group) <= set(module.VARIANTS) and len(group) > 1
    # A group's first variant is the default: naming it changes nothing.
    assert load_config(name, group[0]).to_dict() == load_config(name).to_dict()
  for variant in module.VARIANTS:
    load_config(name, variant)


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
  # The model section adds the network's own fields to the base's.
  assert set(base) <= set(config)
  assert config['model.name'] in models.NETWORKS


# ------------------------------------------------ fields the code reads

# Names that hold a run's config in posejax/, and the sections some
# functions take alone (`input_config`, ...); `X.config` of these objects is
# a run's config too.
_CONFIG_NAMES = {'config': (), **{f'{s}_config': (s,) for s in config_lib.SECTIONS}}
_HOLDERS = ('self', 'setup', 'values', 'FLAGS')
_METHODS = frozenset(dir(ml_collections.ConfigDict))


def _field_path(node, aliases):
  """('eval', 'boxes') for `config.eval.boxes`, `config.eval['boxes']`, an
  alias of either, `config.eval.get('boxes')` or getattr; else None."""
  if isinstance(node, ast.Name):
    return aliases.get(node.id)
  if isinstance(node, ast.Attribute):
    path = _field_path(node.value, aliases)
    if path is None:
      holder = node.value.id if isinstance(node.value, ast.Name) else getattr(
          node.value, 'attr', None)
      return () if node.attr == 'config' and holder in _HOLDERS else None
    return None if node.attr in _METHODS else path + (node.attr,)
  if isinstance(node, ast.Subscript):
    path = _field_path(node.value, aliases)
    key = node.slice
    if path is not None and isinstance(key, ast.Constant) and isinstance(key.value, str):
      return path + (key.value,)
    return None
  if isinstance(node, ast.Call):
    read = _call_read(node, aliases)
    return read and read[0]
  if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
    return _field_path(node.values[0], aliases)  # `config.x.get('y') or {}`
  return None


def _call_read(node, aliases):
  """(path, with a default) of `X.get('f'[, d])` or `getattr(X, 'f'[, d])`."""
  func, args = node.func, node.args
  if isinstance(func, ast.Attribute) and func.attr == 'get':
    target, key, default = func.value, args[:1], len(args) > 1
  elif isinstance(func, ast.Name) and func.id == 'getattr':
    target, key, default = (args[0] if args else None), args[1:2], len(args) > 2
  else:
    return None
  if not (key and isinstance(key[0], ast.Constant) and isinstance(key[0].value, str)):
    return None
  path = _field_path(target, aliases)
  return None if path is None else (path + (key[0].value,), default or True)


def _scopes(tree):
  """Module statements and each function or method (with what it nests)."""
  for node in tree.body:
    yield from (node.body if isinstance(node, ast.ClassDef) else [node])


def config_reads(source: str):
  """(line, 'a.b.c', how) of every config field a source reads or writes.

  how is 'attr' (attribute or subscript) or 'get' (`.get` or getattr). In
  each function, a name assigned a config field is its alias (`stopping =
  config.train.early_stopping`), and a config name bound to anything else
  is no config there (`config = dict(...)`).
  """
  reads = []
  for scope in _scopes(ast.parse(source)):
    nodes = list(ast.walk(scope))
    aliases = dict(_CONFIG_NAMES)
    for node in nodes:
      if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
          if isinstance(target, ast.Name):
            path = _field_path(node.value, aliases)
            if path is None:
              aliases.pop(target.id, None)
            else:
              aliases[target.id] = path
    bound = {id(t) for n in nodes if isinstance(n, (ast.Assign, ast.AnnAssign))
             for t in (n.targets if isinstance(n, ast.Assign) else [n.target])}
    for node in nodes:  # loop variables, `with ... as`, unpacking, walrus
      if (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
          and id(node) not in bound):
        aliases.pop(node.id, None)
    for node in nodes:
      if isinstance(node, ast.Call) and (read := _call_read(node, aliases)):
        reads.append((node.lineno, '.'.join(read[0]), 'get'))
      elif isinstance(node, (ast.Attribute, ast.Subscript)):
        path = _field_path(node, aliases)
        if path:
          reads.append((node.lineno, '.'.join(path), 'attr'))
  return sorted(reads)


def _declared(path: str) -> bool:
  """Whether base_config declares the field (or a field holding it)."""
  node = config_lib.base_config()
  for key in path.split('.'):
    if not isinstance(node, ml_collections.ConfigDict):
      return True  # an attribute of a declared value
    if key not in node:
      return False
    node = node[key]
  return True


def _posejax_reads():
  for path in sorted(glob.glob(os.path.join(REPO, 'posejax', '**', '*.py'),
                               recursive=True)):
    with open(path) as f:
      source = f.read()
    for line, field, how in config_reads(source):
      yield os.path.relpath(path, REPO), line, field, how


def test_every_config_field_the_code_reads_is_declared():
  reads = list(_posejax_reads())
  # The scan sees the reads it is meant for.
  fields = {field for _, _, field, _ in reads}
  assert {'input.crop', 'train.early_stopping.patience', 'eval.flip_shift',
          'train.profile', 'loss.stage_weights'} <= fields
  undeclared = [f'{file}:{line} {field}' for file, line, field, _ in reads
                if not _declared(field)]
  assert not undeclared, (
      'Declare these in config_lib.base_config(): ' + ', '.join(undeclared))


def test_declared_fields_are_read_as_attributes():
  gets = {(file, field): line for file, line, field, how in _posejax_reads()
          if how == 'get' and _declared(field)}
  left = [f'{file}:{line} {field}' for (file, field), line in sorted(gets.items())]
  assert not left, ('Read declared fields as config.<section>.<field>, not '
                    'with .get (base_config holds the default): ' + ', '.join(left))


def test_the_scan_finds_undeclared_reads_and_gets():
  source = """
def f(config, input_config):
  a = config.train.no_such_field
  b = input_config.get('crop', 'centred')
  stopping = config.train.early_stopping
  c = stopping.no_such_patience + getattr(config.eval, 'flip_test', True)
  d = config.model['no_such_key']
  return config.to_dict(), config.train.get('no_such_get')

def g(config):
  config = dict(name='x')  # no run config here
  return config.name
"""
  reads = config_reads(source)
  assert [(f, how) for _, f, how in reads if not _declared(f)] == [
      ('train.no_such_field', 'attr'), ('train.early_stopping.no_such_patience', 'attr'),
      ('model.no_such_key', 'attr'), ('train.no_such_get', 'get')]
  assert {(f, how) for _, f, how in reads if how == 'get'} == {
      ('input.crop', 'get'), ('eval.flip_test', 'get'), ('train.no_such_get', 'get')}


def test_optional_fields_take_overrides_on_the_command_line():
  # As main.py defines the flag; the overrides are read from the argv given.
  argv = ['posejax', f'--config={REPO}/configs/hrnet_coco.py:smoke',
          '--config.train.profile=True', '--config.loss.stage_weights=(0.5,1.0)',
          '--config.model.preset=w48']
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                  flag_values=values, sys_argv=argv)
  values(argv)
  config = values.config
  assert config.train.profile is True
  assert config.loss.stage_weights == (0.5, 1.0) and config.model.preset == 'w48'
  # Unset, the optional fields are None: one weight a stage, the class's
  # defaults.
  base = config_lib.base_config()
  assert (base.loss.stage_weights, base.model.preset, base.train.profile) == (
      None, None, False)


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


# The synthetic recipes' smoke variants bring their own tiny data.
@pytest.mark.parametrize('name, variant',
                         [r for r in RECIPES if not r[0].startswith('synthetic')])
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
  sizes = {name: tuple(load_config(name, 'smoke').input.size)
           for name in recipe_configs.NAMES if not name.startswith('synthetic')}
  assert sizes == {
      'hrnet_coco': (64, 48), 'simple_baseline_coco': (64, 64),
      'hourglass_mpii': (32, 32), 'cpm_fashionai': (32, 32),
      'hourglass_facial_keypoints': (16, 16), 'hrnet_wflw': (32, 32),
      'fashionai_champion': (64, 64), 'higherhrnet_coco': (64, 64),
      'ae_hourglass_coco': (64, 64), 'openpose_coco': (64, 64),
      'cpn_coco': (64, 64), 'mspn_coco': (64, 64)}


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


@pytest.mark.slow
def test_unknown_variant_is_one_line(tmp_path):
  message = _main(tmp_path, '--config=configs/synthetic.py:foo')
  assert "'foo'" in message and 'configs/synthetic.py' in message
  assert "'simple_baseline'" in message and "'smoke'" in message


@pytest.mark.slow
def test_misspelt_override_is_one_line_with_the_suggestion(tmp_path):
  message = _main(tmp_path, '--config=configs/synthetic.py:smoke',
                  '--config.train.num_step=5')
  assert "'num_step'" in message and '--config.train.num_step' in message
  assert '"num_steps"' in message


@pytest.mark.slow
def test_missing_config_file_is_one_line(tmp_path):
  message = _main(tmp_path, '--config=configs/no_such_recipe.py:smoke')
  assert "'configs/no_such_recipe.py'" in message
  assert 'configs/synthetic.py' in message  # what to pass instead
