r"""Images/s of the inference and training steps of one network.

  python -m posejax.benchmark --model=hrnet:w32 --batch=32 --input=256x192 \
      --dtype=bfloat16 [--keypoints=17 --steps=20 --warmup=3]

(`--pipeline` measures the input pipeline instead: posejax/pipeline_benchmark.py.)

Measures the code that runs in practice, on one device: the forward is
`inference.predict_fn.make_predict_fn` without flip test (normalise, eval-mode forward,
decode), the train step is `train_step.jit_train_step` (render targets,
forward, backward, Adam) on a 1-device mesh with the state donated. Inputs are random
batches already on the device (uint8 images, keypoints, visibility, as the
data pipeline delivers them), so the host and the input pipeline are not
measured.

Each step is compiled ahead of time (lower + compile: the reported compile
time), run `warmup` times, then timed `steps` times with `block_until_ready`
after each call; the median time gives images/s. Also reported: XLA's FLOP
count of each step and the FLOP/s achieved (with `--peak_tflops`, the share
of the chip's peak), XLA's memory estimate of each executable (arguments +
outputs + temporaries) and the device's peak memory in use where the backend
reports it (GPU, TPU; not XLA:CPU). The last line is the result as JSON.

The heatmap stride of the codec is read from the network's output shape
(4 for HRNet, 8 for CPM). Bottom-up networks (HigherHRNet, `hrnet:higher_w32`)
train with the associative-embedding codec on whole images with 30 people
slots (`--keypoints` counts heatmaps and tags: 34 for COCO), and their
forward is the device half of prediction (outputs combined, NMS, top
candidates); the host grouping is benchmarks/grouping_speed.py's.
TensorFlow is never imported.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import statistics
import time
import types
from typing import Any, Callable, Mapping, Sequence

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from posejax import codecs
from posejax import command
from posejax import losses
from posejax import models
from posejax import sharding
from posejax import train_step
from posejax.models import summary


def _time_steps(fn: Callable[[], Any], warmup: int,
                steps: int) -> list[float]:
  """Wall seconds of `steps` calls of `fn` after `warmup` untimed ones."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def _compile(jitted, *args) -> tuple[Any, float]:
  """AOT-compiles `jitted` for `args`; returns it and the seconds taken."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def _flops(compiled) -> float | None:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per program.
    analysis = analysis[0] if analysis else None
  if not analysis or analysis.get('flops', 0) <= 0:
    return None
  return float(analysis['flops'])


def _xla_memory_bytes(compiled) -> int | None:
  """XLA's estimate of an executable's footprint (None if not reported)."""
  try:
    stats = compiled.memory_analysis()
  except (NotImplementedError, jax.errors.JaxRuntimeError):
    return None
  if stats is None:
    return None
  return int(stats.argument_size_in_bytes + stats.output_size_in_bytes +
             stats.temp_size_in_bytes - stats.alias_size_in_bytes)


def _peak_device_bytes(device) -> int | None:
  stats = device.memory_stats()  # None on XLA:CPU.
  if not stats or 'peak_bytes_in_use' not in stats:
    return None
  return int(stats['peak_bytes_in_use'])


def _random_batch(seed: int, batch_size: int, input_size: Sequence[int],
                  num_keypoints: int, mesh) -> dict[str, jax.Array]:
  """A train batch as the pipeline delivers it, placed on the mesh."""
  height, width = input_size
  rng = np.random.default_rng(seed)
  batch = {
      'image': rng.integers(0, 256, (batch_size, height, width, 3), np.uint8),
      'keypoints': (rng.uniform(size=(batch_size, num_keypoints, 2)) *
                    [width - 1, height - 1]).astype(np.float32),
      # COCO visibility 0/1/2: some joints unlabelled, as in real data.
      'visibility': rng.integers(0, 3, (batch_size, num_keypoints), np.int32),
  }
  return jax.device_put(batch, sharding.data_sharding(mesh))


def _random_people_batch(seed: int, batch_size: int, input_size: Sequence[int],
                         num_keypoints: int, mesh, max_people: int = 30):
  """A whole-image batch (posejax/batches.py), a few people per image."""
  height, width = input_size
  rng = np.random.default_rng(seed)
  visible = rng.uniform(size=(batch_size, max_people, num_keypoints)) < 0.1
  batch = {
      'image': rng.integers(0, 256, (batch_size, height, width, 3), np.uint8),
      'keypoints': (rng.uniform(size=(batch_size, max_people, num_keypoints, 2))
                    * [width - 1, height - 1]).astype(np.float32),
      'visibility': (2 * visible).astype(np.int32),
      'ignore_mask': np.zeros((batch_size, height, width), np.uint8),
  }
  return jax.device_put(batch, sharding.data_sharding(mesh))


def trace_summary(trace_dir: str, top: int = 10) -> dict[str, Any]:
  """Where the time of a `jax.profiler` trace goes, from its Perfetto file.

  The ops of the busiest timeline: a device's 'XLA Ops' line (GPU, TPU), else
  its busiest stream of kernels, or on the CPU the XLA client's threads. Ops are grouped by kind (the HLO name
  without its number: `fusion`, `convolution`, `copy`, ...) and listed by
  total time. `busy` is the share of the traced span in which the line ran
  an op; what is left is time the device waited for the host.
  """
  files = sorted(glob.glob(os.path.join(trace_dir, '**', '*perfetto_trace.json.gz'),
                           recursive=True), key=os.path.getmtime)
  if not files:
    raise FileNotFoundError(f'No *perfetto_trace.json.gz under {trace_dir}.')
  with gzip.open(files[-1]) as f:
    events = json.load(f)
  if isinstance(events, dict):
    events = events.get('traceEvents', [])
  processes, threads = {}, {}
  for e in events:
    if e.get('ph') == 'M' and e.get('name') == 'process_name':
      processes[e['pid']] = e['args']['name']
    elif e.get('ph') == 'M' and e.get('name') == 'thread_name':
      threads[(e['pid'], e.get('tid'))] = e['args']['name']
  lines = collections.defaultdict(list)
  for e in events:
    if e.get('ph') != 'X':
      continue
    process = processes.get(e['pid'], '')
    thread = threads.get((e['pid'], e.get('tid')), '')
    if process.startswith('/device:'):
      # 'XLA Ops' has the HLO ops; 'Stream #...' lines their kernels.
      if thread != 'XLA Ops' and not thread.startswith('Stream'):
        continue
    elif not thread.startswith('tf_XLA'):
      continue  # host: Python, the runtime's bookkeeping
    lines[f'{process} {thread}'].append(e)
  if not lines:
    raise ValueError(f'No XLA op events in {files[-1]}.')
  xla_ops = {k: v for k, v in lines.items() if k.endswith(' XLA Ops')}
  line, ops = max((xla_ops or lines).items(),
                  key=lambda kv: sum(e.get('dur', 0) for e in kv[1]))
  # Events nest on the CPU (the executor's frames, named like `Class::Method`,
  # wrap the ops): an event counts its own time, without its children's;
  # the line is busy while a top-level event runs; frames are not ops.
  ops = sorted(ops, key=lambda e: (e['ts'], -e.get('dur', 0)))
  self_us = [float(e.get('dur', 0)) for e in ops]
  stack, busy_us = [], 0.0
  for i, e in enumerate(ops):
    while stack and ops[stack[-1]]['ts'] + ops[stack[-1]].get('dur', 0) <= e['ts']:
      stack.pop()
    if stack:
      self_us[stack[-1]] -= e.get('dur', 0)
    else:
      busy_us += e.get('dur', 0)
    stack.append(i)
  span_us = max(e['ts'] + e.get('dur', 0) for e in ops) - min(e['ts'] for e in ops)
  by_kind, by_op = collections.Counter(), collections.Counter()
  for e, us in zip(ops, self_us):
    if '::' not in e['name']:
      by_kind[re.sub(r'[._]\d+$', '', e['name'])] += us
      by_op[e['name']] += us
  total_us = sum(by_op.values())
  share = lambda us: us / total_us if total_us else 0.0
  return {
      'file': files[-1], 'line': line, 'busy_s': busy_us / 1e6,
      'span_s': span_us / 1e6, 'busy': busy_us / span_us if span_us else 0.0,
      'kinds': [(k, us / 1e6, share(us)) for k, us in by_kind.most_common(top)],
      'ops': [(k, us / 1e6, share(us)) for k, us in by_op.most_common(top)],
  }


def benchmark(model_spec: str | Mapping[str, Any],
              batch_size: int,
              input_size: Sequence[int] | None = None,
              dtype: str = 'float32',
              num_keypoints: int | None = None,
              steps: int = 20,
              warmup: int = 3,
              peak_tflops: float | None = None,
              log: Callable[[str], None] | None = print,
              forward: bool = True,
              trace_dir: str | None = None) -> dict[str, Any]:
  """Measures inference and train-step throughput of one network.

  Args:
    model_spec: 'name[:preset]' (a key of `models.NETWORKS` and one of its
      presets), or a model config as `config.model` (a dict with `name` and
      any fields; its `dtype` is replaced by `dtype`).
    batch_size: images per step.
    input_size: (height, width); the network's usual one if None (see
      `summary.default_input`).
    dtype: the model's computation dtype, 'float32' or 'bfloat16'.
    num_keypoints: heatmap channels; the network's usual number if None.
    steps: timed steps of each kind (the median is reported).
    warmup: untimed steps of each kind after compilation.
    peak_tflops: the device's peak FLOP/s in TFLOP/s, for the utilisation.
    log: called with a line of progress; None for silence.
    forward: also measure the inference step (else the train step only).
    trace_dir: if set, three more train steps are traced there with
      `jax.profiler` (TensorBoard's profile plugin or Perfetto open it), and
      `trace` in the result says where their time went (`trace_summary`).

  Returns:
    A JSON-ready dict: the setup (model, batch, input, dtype, backend,
    device), and for `forward` and `train`: `images_per_s`, `step_s`
    (median), `compile_s`, `flops` (one step, XLA's count),
    `tflops_per_s`, `utilization`, `xla_memory_bytes`; and
    `peak_memory_bytes` (after both; None where not reported).
  """
  if batch_size < 1 or steps < 1 or warmup < 0:
    raise ValueError(
        f'Need batch >= 1, steps >= 1 and warmup >= 0; got batch '
        f'{batch_size}, steps {steps}, warmup {warmup}.')
  say = log or (lambda _: None)
  if isinstance(model_spec, str):
    name, preset = summary.parse_model_spec(model_spec)
  else:
    name, preset = model_spec['name'], model_spec.get('preset')
  default_size, default_k = summary.default_input(name, preset)
  input_size = tuple(input_size or default_size)
  num_keypoints = num_keypoints or default_k
  if isinstance(model_spec, str):
    model = summary.build(model_spec, num_keypoints, dtype)
  else:
    model = models.build_model({**model_spec, 'dtype': dtype}, num_keypoints)
    model_spec = name + (f':{preset}' if preset else '') + ' (custom)'

  device = jax.devices()[0]
  mesh = sharding.make_mesh(types.SimpleNamespace(data=1), [device])
  say(f'backend: {jax.default_backend()}, device: {device.device_kind} '
      f'({device}), {jax.device_count()} visible')

  # The codec's stride follows the network (CPM's heatmaps are at 1/8).
  out = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x)[0],
      jax.ShapeDtypeStruct((1, *input_size, 3), jnp.float32))
  stride = input_size[0] // out[-1].shape[1]
  # Bottom-up families and the keypoints of their people: HigherHRNet's
  # heatmaps and tags (K of each), OpenPose's COCO-18 maps and 19 limbs
  # (COCO's 17 keypoints).
  bottom_up = getattr(model, 'head', None) == 'higher' or name == 'openpose'
  if getattr(model, 'head', None) == 'higher':
    stride = input_size[0] // out[0].shape[1]
    people_keypoints = num_keypoints // 2
    codec = codecs.AssociativeEmbeddingCodec(
        input_size=input_size, num_keypoints=people_keypoints, stride=stride,
        decode_outputs=len(out))
  elif name == 'openpose':
    people_keypoints = 17
    codec = codecs.PartAffinityCodec(input_size=input_size,
                                     num_keypoints=people_keypoints, stride=stride)
    if codec.output_channels(people_keypoints) != num_keypoints:
      raise ValueError(f'openpose: the PAF codec of COCO\'s 17 keypoints reads '
                       f'{codec.output_channels(people_keypoints)} channels, not '
                       f'{num_keypoints}.')
  else:
    codec = codecs.HeatmapCodec(input_size=input_size, stride=stride)

  optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-3, warmup_steps=0, schedule='step', decay_steps=(),
      decay_factor=0.1, weight_decay=0.0, grad_clip_norm=0.0))
  training = train_step.build_training(  # Plain Adam.
      model, codec, losses.Loss(), mesh, optim, num_steps=1,
      input_size=input_size)
  state = training.state
  batch = (_random_people_batch(0, batch_size, input_size, people_keypoints, mesh)
           if bottom_up else
           _random_batch(0, batch_size, input_size, num_keypoints, mesh))
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  say(f'{model_spec}: {num_params:,} parameters, batch {batch_size}, input '
      f'{input_size[0]}x{input_size[1]}, {num_keypoints} keypoints, {dtype}, '
      f'heatmap stride {stride}')

  result: dict[str, Any] = dict(
      model=model_spec, batch=batch_size, input=list(input_size),
      keypoints=num_keypoints, dtype=dtype, params=num_params,
      bottom_up=bottom_up,
      backend=jax.default_backend(), device=device.device_kind,
      steps=steps, warmup=warmup)

  def report(kind, compiled, compile_s, times):
    step_s = statistics.median(times)
    flops = _flops(compiled)
    tflops_per_s = None if flops is None else flops / step_s / 1e12
    entry = dict(
        images_per_s=batch_size / step_s, step_s=step_s, compile_s=compile_s,
        flops=flops, tflops_per_s=tflops_per_s,
        utilization=(tflops_per_s / peak_tflops
                     if tflops_per_s is not None and peak_tflops else None),
        xla_memory_bytes=_xla_memory_bytes(compiled))
    result[kind] = entry
    line = (f'{kind:>7}: {entry["images_per_s"]:9.2f} images/s, '
            f'{step_s * 1e3:9.2f} ms/step (median of {len(times)}), '
            f'compile {compile_s:6.1f} s')
    if tflops_per_s is not None:
      line += f', {tflops_per_s:.3f} TFLOP/s'
    if entry['utilization'] is not None:
      line += f' ({100 * entry["utilization"]:.1f}% of peak)'
    if entry['xla_memory_bytes'] is not None:
      line += f', XLA memory {entry["xla_memory_bytes"] / 2**20:.0f} MiB'
    say(line)

  # Forward first: the train step donates (consumes) the state.
  variables = state.variables
  if forward:
    # Imported here: prediction brings OpenCV and the COCO tools, which the
    # train-step measurement (benchmarks/gpu.py) does without.
    from posejax.inference import predict_fn as predict_fn_lib  # pylint: disable=g-import-not-at-top
    if bottom_up:
      predict_fn = jax.jit(lambda v, x: codec.decode(codec.combine(model.apply(
          v, models.common.model_inputs(model, x), train=False))))
    else:
      predict_fn = predict_fn_lib.make_predict_fn(model, codec)
    compiled, compile_s = _compile(predict_fn, variables, batch['image'])
    times = _time_steps(lambda: compiled(variables, batch['image']), warmup,
                        steps)
    report('forward', compiled, compile_s, times)

  compiled, compile_s = _compile(training.step, state, batch)
  holder = [state]
  del state, variables  # Donated below.

  def run_train_step():
    holder[0], metrics = compiled(holder[0], batch)
    return holder[0], metrics

  times = _time_steps(run_train_step, warmup, steps)
  loss = float(jax.device_get(run_train_step()[1]['loss']))
  if not np.isfinite(loss):
    raise FloatingPointError(f'Train-step loss is {loss}.')
  report('train', compiled, compile_s, times)
  if trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(3):
        jax.block_until_ready(run_train_step())
    try:
      result['trace'] = trace_summary(trace_dir)
    except (OSError, ValueError, KeyError) as e:  # the measurement stands
      result['trace_error'] = f'{type(e).__name__}: {e}'
      say(f'trace written to {trace_dir}, not summarised: {e}')
    else:
      say(f"traced: the busiest XLA line ran ops {100 * result['trace']['busy']:.0f}% "
          'of the time; by kind: ' + ', '.join(
              f'{k} {100 * f:.0f}%' for k, _, f in result['trace']['kinds'][:5]))

  peak = _peak_device_bytes(device)
  result['peak_memory_bytes'] = peak
  say('peak device memory: ' +
      ('n/a (not reported by this backend)' if peak is None
       else f'{peak / 2**30:.2f} GiB'))
  return result


def define_flags() -> None:
  """The command-line flags, defined only when run as a program."""
  flags.DEFINE_string('model', 'hrnet:w32', 'NAME[:PRESET], e.g. hrnet:w32.')
  flags.DEFINE_integer('batch', 32, 'Images per step.')
  flags.DEFINE_string(
      'input', None, "HEIGHTxWIDTH, e.g. 256x192; the network's usual if unset.")
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                    'Computation dtype (parameters stay float32).')
  flags.DEFINE_integer(
      'keypoints', None, "Heatmap channels; the network's usual if unset.")
  flags.DEFINE_integer('steps', 20, 'Timed steps of each kind (median).')
  flags.DEFINE_integer('warmup', 3, 'Untimed steps after compilation.')
  flags.DEFINE_bool('pipeline', False, 'Measure the input pipeline\'s crops/s '
                    'per core instead (posejax/pipeline_benchmark.py).')
  flags.DEFINE_list('cores', ['1'], 'With --pipeline: numbers of cores to pin to.')
  flags.DEFINE_integer('images', 256, 'With --pipeline: generated 640x480 images.')
  flags.DEFINE_integer('crops', 3200, 'With --pipeline: timed crops per run.')
  flags.DEFINE_string('data_dir', None, 'With --pipeline: where the images go.')
  flags.DEFINE_float(
      'peak_tflops', None,
      "The device's peak TFLOP/s at --dtype, to report the utilisation.")


def main(values):
  if values.pipeline:
    # TensorFlow only here: the step benchmark runs without it.
    from posejax import pipeline_benchmark  # pylint: disable=g-import-not-at-top
    try:
      cores = [int(n) for n in values.cores]
    except ValueError:
      raise ValueError('--cores takes numbers of cores, e.g. --cores=1,2; got '
                       f'{",".join(values.cores)!r}.') from None
    result = pipeline_benchmark.benchmark(cores, values.images, values.crops,
                                          values.data_dir)
  else:
    input_size = (summary.parse_input_size(values.input)
                  if values.input else None)
    result = benchmark(values.model, values.batch, input_size, values.dtype,
                       values.keypoints, values.steps, values.warmup,
                       values.peak_tflops)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  define_flags()
  command.run(main, prefix='posejax.benchmark')
