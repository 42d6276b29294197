"""Tests for posejax.benchmark (a tiny HRNet, two timed steps)."""

from __future__ import annotations

import json
import math

import pytest

from posejax import benchmark

TINY_HRNET = dict(name='hrnet', stem_width=8, stage1_blocks=1, widths=(4, 8),
                  num_modules=(1,), num_blocks=1)


@pytest.mark.slow
def test_benchmark_reports_positive_finite_numbers():
  lines = []
  result = benchmark.benchmark(TINY_HRNET, batch_size=2, input_size=(32, 32),
                               num_keypoints=3, steps=2, warmup=1,
                               peak_tflops=1.0, log=lines.append)
  json.dumps(result)  # The CLI prints it as one JSON line.
  assert result['backend'] == 'cpu'
  assert result['batch'] == 2 and result['input'] == [32, 32]
  assert result['params'] > 0
  for kind in ('forward', 'train'):
    entry = result[kind]
    for field in ('images_per_s', 'step_s', 'compile_s', 'flops',
                  'tflops_per_s', 'utilization'):
      assert math.isfinite(entry[field]) and entry[field] > 0, (kind, field)
    assert math.isclose(entry['images_per_s'] * entry['step_s'], 2)
  # Backward + Adam cost more than the forward alone.
  assert result['train']['flops'] > 2 * result['forward']['flops']
  # XLA:CPU reports no device memory statistics.
  assert result['peak_memory_bytes'] is None
  assert any(line.startswith('backend: cpu') for line in lines)
  assert any('n/a' in line for line in lines)



@pytest.mark.slow
def test_pipeline_benchmark_measures_both_loops(tmp_path):
  """`--pipeline`: the tf.data pipeline (JPEGs, cached images) and the OpenCV
  loop, pinned to a core."""
  from posejax import pipeline_benchmark
  lines = []
  result = pipeline_benchmark.benchmark(cores=[1], num_images=12, crops=64,
                                        data_dir=str(tmp_path), log=lines.append)
  json.dumps(result)
  assert result['image_size'] == [480, 640] and result['input_size'] == [256, 192]
  assert [r['pipeline'] for r in result['runs']] == ['posejax', 'posejax cached']
  for run in result['runs']:
    assert run['cores'] == 1 and run['crops_per_s'] > 0
    assert math.isclose(run['ratio_to_opencv'],
                        run['crops_per_s_per_core'] / result['opencv_crops_per_s_per_core'])
  assert sum('needs about' in line for line in lines) == 2
  assert pipeline_benchmark.cores_per_gpu(3000, 500) == 6
  with __import__('pytest').raises(ValueError, match='--cores must be within'):
    pipeline_benchmark.benchmark(cores=[10_000], data_dir=str(tmp_path))
  import subprocess
  import sys
  proc = subprocess.run([sys.executable, '-m', 'posejax.benchmark', '--pipeline',
                         '--cores=1,two'], capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1] == (
      "posejax.benchmark: --cores takes numbers of cores, e.g. --cores=1,2; got '1,two'.")


@pytest.mark.slow
def test_gpu_benchmark_script_prints_one_table(tmp_path):
  """benchmarks/gpu.py --smoke: both halves (JAX, PyTorch) and the table,
  without TensorFlow, TFDS, pycocotools or clu."""
  import os
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = tmp_path / 'gpu.json'
  # The GPU machines have JAX, Flax, Optax, Orbax and PyTorch but none of
  # these: every process of the script runs with them unimportable.
  (tmp_path / 'sitecustomize.py').write_text(
      'import sys\n'
      "for name in ('tensorflow', 'tensorflow_datasets', 'pycocotools', 'clu'):\n"
      '  sys.modules[name] = None\n')
  env = dict(os.environ, PYTHONPATH=str(tmp_path))
  trace_dir = tmp_path / 'trace'
  proc = subprocess.run([sys.executable, 'benchmarks/gpu.py', '--smoke', f'--out={out}',
                         f'--trace_dir={trace_dir}'],
                        cwd=repo, capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [line for line in proc.stdout.splitlines() if line.startswith('| hrnet (smoke)')]
  assert len(rows) == 2 and '| float32 |' in rows[0] and '| bfloat16 |' in rows[1]
  # The bottom-up network's row, and the grouping's line.
  assert any(line.startswith('| hrnet:higher (smoke) |') for line in proc.stdout.splitlines())
  assert 'Bottom-up decoding and grouping, 64x64 maps' in proc.stdout
  results = json.loads(out.read_text())
  assert {r['framework'] for r in results} == {'posejax', 'pytorch', 'grouping'}
  assert all('error' not in r for r in results)
  assert all(r['images_per_s'] > 0 for r in results if r['framework'] != 'grouping')
  grouping = [r for r in results if r['framework'] == 'grouping']
  assert [r['codec'] for r in grouping] == ['associative_embedding', 'part_affinity']
  assert all(r['same_people'] and r['posejax_ms'] > 0 for r in grouping)
  assert 'Bottom-up decoding and grouping (part affinity fields), 64x64 maps' in proc.stdout
  # PyTorch's images/s and the ratio beside the bf16 row only.
  assert rows[1].rstrip(' |').endswith('x') and not rows[0].rstrip(' |').endswith('x')
  # The bf16 case was traced: the trace is on disk, its ops are in the table.
  (traced,) = [r for r in results if 'trace' in r]
  assert traced['dtype'] == 'bfloat16' and traced['framework'] == 'posejax'
  assert list(trace_dir.glob('**/*perfetto_trace.json.gz'))
  assert 0 < traced['trace']['busy'] <= 1.0 + 1e-6
  kinds = dict((k, f) for k, _, f in traced['trace']['kinds'])
  assert any('conv' in k for k in kinds) and sum(kinds.values()) <= 1.0 + 1e-6
  assert 'Where the time goes' in proc.stdout and '| op kind | ms (3 steps) | share |' in proc.stdout
  # A half whose time budget is spent reports its cases as skipped.
  proc = subprocess.run([sys.executable, 'benchmarks/gpu.py', '--part=torch', '--smoke',
                         '--budget_s=0'], cwd=repo, capture_output=True, text=True,
                        timeout=300, env=env)
  (skipped,) = [json.loads(line[len('RESULT '):]) for line in proc.stdout.splitlines()
                if line.startswith('RESULT ')]
  assert skipped['error'] == 'skipped: the time budget of 0 s was spent'
  # --trace_dir= (empty): measured, not traced.
  proc = subprocess.run([sys.executable, 'benchmarks/gpu.py', '--part=jax', '--smoke',
                         '--budget_s=600', '--trace_dir='], cwd=repo, capture_output=True,
                        text=True, timeout=300, env=env)
  untraced = [json.loads(line[len('RESULT '):]) for line in proc.stdout.splitlines()
              if line.startswith('RESULT ')]
  assert len(untraced) == 3 and all('images_per_s' in r and 'trace' not in r
                                    for r in untraced)


def test_trace_summary_reads_a_device_line(tmp_path):
  """A GPU trace's 'XLA Ops' line: ops by kind and by name, the busy share;
  without that line, the busiest stream; no XLA events: a clear error."""
  import gzip
  from posejax import benchmark
  folder = tmp_path / 'plugins' / 'profile' / 'run'
  folder.mkdir(parents=True)

  def write(events):
    meta = [{'ph': 'M', 'name': 'process_name', 'pid': 1, 'args': {'name': '/device:GPU:0'}},
            {'ph': 'M', 'name': 'thread_name', 'pid': 1, 'tid': 1, 'args': {'name': 'XLA Ops'}},
            {'ph': 'M', 'name': 'thread_name', 'pid': 1, 'tid': 2,
             'args': {'name': 'Stream #13(Compute)'}},
            {'ph': 'M', 'name': 'process_name', 'pid': 2, 'args': {'name': '/host:CPU'}},
            {'ph': 'M', 'name': 'thread_name', 'pid': 2, 'tid': 1, 'args': {'name': 'python'}}]
    with gzip.open(folder / 'perfetto_trace.json.gz', 'wt') as f:
      json.dump({'traceEvents': meta + events}, f)

  op = lambda tid, name, ts, dur, pid=1: {'ph': 'X', 'pid': pid, 'tid': tid, 'name': name,
                                          'ts': ts, 'dur': dur}
  write([op(1, 'fusion.1', 0, 30), op(1, 'convolution.2', 40, 50), op(1, 'fusion.3', 100, 20),
         op(2, 'sm90_xmma_fprop', 40, 45), op(1, 'PjitFunction(step)', 0, 500, pid=2)])
  t = benchmark.trace_summary(str(tmp_path))
  assert t['line'] == '/device:GPU:0 XLA Ops'
  assert math.isclose(t['busy'], 100 / 120) and math.isclose(t['span_s'], 120e-6)
  assert [(k, round(f, 3)) for k, _, f in t['kinds']] == [('fusion', 0.5), ('convolution', 0.5)]
  assert [k for k, _, _ in t['ops']] == ['convolution.2', 'fusion.1', 'fusion.3']
  write([op(2, 'sm90_xmma_fprop', 40, 45), op(2, 'sm90_xmma_fprop', 100, 15)])
  t = benchmark.trace_summary(str(tmp_path))
  assert t['line'] == '/device:GPU:0 Stream #13(Compute)' and t['ops'][0][0] == 'sm90_xmma_fprop'
  write([op(1, 'PjitFunction(step)', 0, 500, pid=2)])
  with __import__('pytest').raises(ValueError, match='No XLA op events'):
    benchmark.trace_summary(str(tmp_path))
  with __import__('pytest').raises(FileNotFoundError):
    benchmark.trace_summary(str(tmp_path / 'nothing'))
