"""Tests for posejax.models.summary (parameters, FLOPs, output shapes)."""

from __future__ import annotations

import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from posejax import models
from posejax.models import cpm
from posejax.models import summary


class _TwoConvs(nn.Module):
  """3x3 conv (no padding) + 1x1 conv with bias: FLOPs known exactly."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3), padding='VALID', use_bias=False)(x)
    return [nn.Conv(4, (1, 1))(x)]


def test_count_parameters_is_the_leaf_sum():
  model = cpm.CPM(num_keypoints=5, num_stages=2, feat_channels=8,
                  middle_channels=4, stem_channels=8, stem_hidden_channels=16)
  variables = summary.abstract_variables(model, (32, 24))
  leaves = jax.tree.leaves(variables['params'])
  assert summary.count_parameters(variables) == sum(x.size for x in leaves)
  # BatchNorm statistics are not parameters.
  assert summary.count_parameters(variables) < sum(
      x.size for x in jax.tree.leaves(variables))
  variables = summary.abstract_variables(_TwoConvs(), (6, 5))
  assert summary.count_parameters(variables) == 3 * 3 * 3 * 8 + 8 * 4 + 4


@pytest.mark.parametrize('mode', ['hlo', 'compiled'])
def test_forward_flops_counts_multiply_adds_twice(mode):
  model = _TwoConvs()
  variables = summary.abstract_variables(model, (6, 5))
  flops = summary.forward_flops(model, variables, (6, 5), mode)
  # 4x3 output pixels: 3x3x3 -> 8 conv, then 8 -> 4 conv and bias.
  macs = 4 * 3 * (3 * 3 * 3 * 8 + 8 * 4)
  assert flops >= 2 * macs
  assert flops < 2 * macs + 4 * 3 * 4 * 2  # at most the bias adds on top
  assert summary.forward_flops(model, variables, (6, 5), 'none') is None


def test_summarize_cpm():
  result = summary.summarize('cpm:cpm6', flops='hlo')
  assert result.input_size == (256, 192) and result.num_keypoints == 17
  assert result.params == 31_304_166
  assert result.output_shapes == [(1, 32, 24, 17)] * 6
  # Dominated by the 9x9 / 11x11 convolutions: ~58 G multiply-adds.
  assert 100 < result.gflops < 130
  row = summary.table_row(result)
  assert '31,304,166' in row and '6 x (1, 32, 24, 17)' in row


def test_defaults_and_parsing():
  assert summary.default_input('hrnet', 'v2_w18') == ((256, 256), 98)
  assert summary.default_input('hrnet', 'w32') == ((256, 192), 17)
  assert summary.default_input('not_yet_registered', None) == (
      summary.FALLBACK_INPUT)
  assert summary.parse_model_spec('hrnet:w48') == ('hrnet', 'w48')
  assert summary.parse_model_spec('cpm') == ('cpm', None)
  assert summary.parse_input_size('384x288') == (384, 288)
  with pytest.raises(ValueError, match='HEIGHTxWIDTH'):
    summary.parse_input_size('384')
  specs = summary.registered_specs()
  assert 'cpm:cpm6' in specs and 'hrnet:v2_w18' in specs
  # One row per registered preset, whatever networks exist.
  assert len(specs) == sum(max(len(n.presets), 1)
                           for n in models.NETWORKS.values())
  with pytest.raises(ValueError, match='preset'):
    summary.summarize('cpm:cpm7', flops='none')


@pytest.mark.slow
def test_command_line_one_model():
  out = subprocess.run(
      [sys.executable, '-m', 'posejax.models.summary', '--model=cpm:cpm6',
       '--keypoints=16', '--input=368x368', '--flops=none'],
      check=True, capture_output=True, text=True).stdout
  assert '368x368' in out and 'n/a' in out
  assert 'stage 6: (1, 46, 46, 16)' in out
  params = cpm.CPM(num_keypoints=16)
  expected = summary.count_parameters(
      summary.abstract_variables(params, (368, 368)))
  assert f'{expected:,}' in out
  assert np.isclose(expected, 31.3e6, rtol=0.01)


@pytest.mark.slow
def test_summary_imports_no_tensorflow():
  code = ('import sys, posejax.models.summary; '
          'assert "tensorflow" not in sys.modules, "tensorflow imported"')
  subprocess.run([sys.executable, '-c', code], check=True)
