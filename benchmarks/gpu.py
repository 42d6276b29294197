r"""Train-step images/s on one GPU: posejax (JAX) and PyTorch, one table.

  python benchmarks/gpu.py [--out=gpu.json]     # fits in 8 minutes (a time budget per half)
  python benchmarks/gpu.py --smoke              # tiny networks, CPU: checks the script

posejax: `posejax.benchmark.benchmark` (the real `train_step.jit_train_step`:
targets rendered on device, forward, backward, Adam; random uint8 batches
already on the device) for HRNet-W32, HRNet-W48, SimpleBaseline-R50, the
8-stack Hourglass, CPN-R50 and the 4-stage MSPN, in float32 and bfloat16 (float32 parameters), batches 32
and 128, at each network's usual input (256x192; 256x256 for the hourglass).
Reported per case: images/s (median of 10 steps after 2 warm-ups), achieved
TFLOP/s (XLA's FLOP count of the step) and its share of the chip's dense peak
(bf16 tensor cores for bfloat16, TF32 for float32), XLA's memory for the step
(arguments, outputs and temporaries), and compile time.

PyTorch: the official networks' structure (tests/torch_reference.py, the
modules the equivalence tests check) for HRNet-W32, SimpleBaseline-R50,
CPN-R50 and the 4-stage MSPN (the last two after the hourglass, so a run cut
short by the budget keeps the targets' cases),
channels-last, bf16 autocast (AMP), cuDNN autotuning, Adam on an MSE heatmap
loss (targets given, not rendered; every output of CPN and MSPN), the same batches; peak memory from
torch.cuda. Its images/s sit beside posejax's bfloat16 row.

Where the time goes: three more steps of HRNet-W32 in bfloat16 at batch 128
are traced with `jax.profiler` into --trace_dir (open it in TensorBoard's
profile plugin or in Perfetto), and the table is followed by the trace's XLA
ops grouped by kind and the longest single ops, and by how much of the
traced time the GPU was busy (`benchmark.trace_summary`).

Bottom-up: HigherHRNet-W32 at 512x512 (bfloat16 batch 24, float32 batch
12) after the top-down networks, and benchmarks/grouping_speed.py (the
decoding and grouping of one image's 512x512 maps against a transcription
of the official HigherHRNet group.py, and of one image's 368x368 part
affinity fields against OpenPose's port's body.py, the same people
required).

Each half runs in a child process (JAX takes most of the GPU's memory when
it starts) with a time budget (5.5 minutes for posejax, 75 s for PyTorch; the
grouping benchmark after them, at most 3 minutes, usually under one):
cases run in order of importance (HRNet-W32 and SimpleBaseline-R50 first,
bf16 first, batch 128 first), and a case that would start after its half's
budget is listed as skipped, so the run ends in about 8 minutes whatever the
compile times. Needs JAX with its GPU plugin, Flax, Optax, Orbax and
ml_collections, and PyTorch for its half; not TensorFlow, TFDS, pycocotools
or clu. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# In the order they run (the targets' cases first), each network's cases
# bf16 before float32 and the larger batch first, so that a run cut short by
# its time budget still has the cases that matter most.
JAX_NETWORKS = ('hrnet:w32', 'simple_baseline:r50', 'hrnet:w48', 'hourglass:hg8',
                'cpn:r50', 'mspn:4stg')
TORCH_NETWORKS = ('hrnet:w32', 'simple_baseline:r50', 'cpn:r50', 'mspn:4stg')
DTYPES = ('bfloat16', 'float32')
BATCHES = (128, 32)
# Seconds each half may start cases in (8 minutes in all, with start-up):
# a case that would begin after its half's budget is reported as skipped.
BUDGET_S = {'jax': 330.0, 'torch': 75.0}
# Bottom-up, after the top-down networks: HigherHRNet-W32 at 512 (the
# official yaml trains 12 images per GPU in float32), and the grouping
# against the official code's (benchmarks/grouping_speed.py).
BOTTOM_UP_CASES = (('hrnet:higher_w32', 'bfloat16', 24), ('hrnet:higher_w32', 'float32', 12))

STEPS, WARMUP = 10, 2

# Dense peak TFLOP/s of the H100 SXM and H200 (same compute): bf16 tensor
# cores, and TF32 tensor cores for float32 convolutions.
PEAK_TFLOPS = {'H100': {'bfloat16': 989.0, 'float32': 494.0},
               'H200': {'bfloat16': 989.0, 'float32': 494.0}}

# --smoke: networks small enough for a CPU, same code paths.
SMOKE_HRNET = dict(name='hrnet', stem_width=8, stage1_blocks=1, widths=(4, 8),
                   num_modules=(1,), num_blocks=1)
SMOKE_HIGHER_HRNET = dict(SMOKE_HRNET, head='higher', deconv_blocks=1)
SMOKE_INPUT = (32, 32)


def _peaks(device_kind: str) -> dict:
  return next((v for k, v in PEAK_TFLOPS.items() if k in device_kind), {})


def _traced(network: str, dtype: str, batch: int, smoke: bool) -> bool:
  """The one case whose steps are also traced: HRNet-W32, bf16, the largest batch."""
  return (smoke or network == 'hrnet:w32') and dtype == 'bfloat16' and batch == max(
      (2,) if smoke else BATCHES)


class _Budget:
  """Whether another case fits: the time spent plus the longest case so far."""

  def __init__(self, seconds: float):
    self.seconds, self.start, self.longest = seconds, time.perf_counter(), 0.0

  def allows_another(self) -> bool:
    return time.perf_counter() - self.start + self.longest <= self.seconds

  def timed(self, fn):
    begin = time.perf_counter()
    try:
      return fn()
    finally:
      self.longest = max(self.longest, time.perf_counter() - begin)


def _skipped(case: dict, budget: _Budget) -> dict:
  return {**case, 'error': f'skipped: the time budget of {budget.seconds:.0f} s was spent'}


def _train_figures(r: dict) -> dict:
  """A case's row from `benchmark.benchmark`'s result."""
  train = r['train']
  return dict(device=r['device'], input=r['input'],
              images_per_s=train['images_per_s'], tflops_per_s=train['tflops_per_s'],
              utilization=train['utilization'],
              memory_gib=(train['xla_memory_bytes'] or 0) / 2**30,
              compile_s=train['compile_s'])


def _jax_half(smoke: bool, trace_dir: str | None, budget: _Budget) -> None:
  """Prints one `RESULT {json}` line per case."""
  sys.path.insert(0, REPO)
  import jax  # pylint: disable=g-import-not-at-top
  from posejax import benchmark  # pylint: disable=g-import-not-at-top
  peaks = _peaks(jax.devices()[0].device_kind)
  networks = [SMOKE_HRNET] if smoke else JAX_NETWORKS
  batches = (2,) if smoke else BATCHES
  for network in networks:
    for dtype in DTYPES:
      for batch in batches:
        name = 'hrnet (smoke)' if smoke else network
        case = {'framework': 'posejax', 'network': name, 'dtype': dtype, 'batch': batch}
        if not budget.allows_another():
          print('RESULT ' + json.dumps(_skipped(case, budget)), flush=True)
          continue
        try:
          r = budget.timed(lambda: benchmark.benchmark(
              network, batch, SMOKE_INPUT if smoke else None, dtype,
              num_keypoints=17 if smoke else None, steps=2 if smoke else STEPS,
              warmup=1 if smoke else WARMUP, peak_tflops=peaks.get(dtype),
              log=None, forward=False,
              trace_dir=trace_dir if _traced(network, dtype, batch, smoke) else None))
          case.update(_train_figures(r))
          for key in ('trace', 'trace_error'):
            if key in r:
              case[key] = r[key]
        except Exception as e:  # pylint: disable=broad-except
          case['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
        print('RESULT ' + json.dumps(case), flush=True)
  cases = ((SMOKE_HIGHER_HRNET, 'bfloat16', 2),) if smoke else BOTTOM_UP_CASES
  for network, dtype, batch in cases:
    name = 'hrnet:higher (smoke)' if smoke else network
    case = {'framework': 'posejax', 'network': name, 'dtype': dtype, 'batch': batch}
    if not budget.allows_another():
      print('RESULT ' + json.dumps(_skipped(case, budget)), flush=True)
      continue
    try:
      r = budget.timed(lambda: benchmark.benchmark(
          network, batch, SMOKE_INPUT if smoke else None, dtype,
          num_keypoints=34, steps=2 if smoke else STEPS,
          warmup=1 if smoke else WARMUP, peak_tflops=peaks.get(dtype), log=None,
          forward=False))
      case.update(_train_figures(r))
    except Exception as e:  # pylint: disable=broad-except
      case['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
    print('RESULT ' + json.dumps(case), flush=True)


def _grouping(smoke: bool, codec: str = 'associative_embedding') -> dict:
  """benchmarks/grouping_speed.py in a child process: its JSON line."""
  args = [sys.executable, os.path.join(REPO, 'benchmarks', 'grouping_speed.py'),
          f'--codec={codec}']
  size = 512 if codec == 'associative_embedding' else 368
  args += ['--size=64', '--images=2'] if smoke else [f'--size={size}', '--images=10']
  env = dict(os.environ)
  if smoke:
    env.setdefault('JAX_PLATFORMS', 'cpu')
  proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False,
                        timeout=180)
  try:
    return {'framework': 'grouping', **json.loads(proc.stdout.strip().splitlines()[-1])}
  except (ValueError, IndexError):
    return {'framework': 'grouping',
            'error': f'exit {proc.returncode}: ' + proc.stderr.strip()[-500:]}


def _torch_network(name: str, smoke: bool):
  sys.path.insert(0, os.path.join(REPO, 'tests'))
  sys.path.insert(0, os.path.join(REPO, 'benchmarks'))
  import torch_reference as ref  # pylint: disable=g-import-not-at-top
  import train_step_vs_pytorch  # pylint: disable=g-import-not-at-top
  if smoke:
    return ref.TorchPoseHRNet(17, 8, 1, (4, 8), (1,), 1)
  # HRNet-W32 w32_256x192_adam_lr1e-3.yaml, SimpleBaseline-R50
  # res50_256x192_d256x3_adam_lr1e-3.yaml, CPN-R50 (the port), MSPN 4-stage.
  return train_step_vs_pytorch._torch_module(name)


def _torch_case(name: str, batch: int, smoke: bool) -> dict:
  """Images/s and peak memory of one PyTorch AMP train step."""
  import torch  # pylint: disable=g-import-not-at-top
  cuda = torch.cuda.is_available()
  device = torch.device('cuda' if cuda else 'cpu')
  height, width = SMOKE_INPUT if smoke else (256, 192)
  model = _torch_network(name, smoke).to(device, memory_format=torch.channels_last)
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  x = torch.randn(batch, 3, height, width, device=device).to(
      memory_format=torch.channels_last)
  target = torch.rand(batch, 17, height // 4, width // 4, device=device)
  flat = lambda out: [t for o in out for t in flat(o)] if isinstance(out, (list, tuple)) else [out]
  if cuda:
    torch.cuda.reset_peak_memory_stats()

  def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16):
      out = model(x)
    # Every output (CPN's five, MSPN's 16) against the same maps.
    loss = sum(((o.float() - target) ** 2).mean() for o in flat(out))
    loss.backward()
    optimizer.step()

  times = []
  for i in range((1 if smoke else 3) + (2 if smoke else STEPS)):
    start = time.perf_counter()
    step()
    if cuda:
      torch.cuda.synchronize()
    if i >= (1 if smoke else 3):
      times.append(time.perf_counter() - start)
  result = dict(device=torch.cuda.get_device_name() if cuda else 'cpu',
                input=[height, width], images_per_s=batch / statistics.median(times),
                memory_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0)
  del model, optimizer
  if cuda:
    torch.cuda.empty_cache()
  return result


def _torch_half(smoke: bool, budget: _Budget) -> None:
  import torch  # pylint: disable=g-import-not-at-top
  torch.backends.cudnn.benchmark = True
  networks = ['hrnet:w32'] if smoke else TORCH_NETWORKS
  batches = (2,) if smoke else BATCHES
  for name in networks:
    for batch in batches:
      case = {'framework': 'pytorch', 'network': 'hrnet (smoke)' if smoke else name,
              'dtype': 'bfloat16', 'batch': batch}
      if not budget.allows_another():
        case = _skipped(case, budget)
      else:
        try:
          case.update(budget.timed(lambda: _torch_case(name, batch, smoke)))
        except Exception as e:  # pylint: disable=broad-except
          case['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
      print('RESULT ' + json.dumps(case), flush=True)


def _run_half(part: str, smoke: bool, trace_dir: str | None = None,
              budget_s: float | None = None) -> list[dict]:
  args = [sys.executable, os.path.abspath(__file__), f'--part={part}',
          f'--budget_s={BUDGET_S[part] if budget_s is None else budget_s}',
          f'--trace_dir={trace_dir or ""}']
  env = dict(os.environ)
  if smoke:
    args.append('--smoke')
    env.setdefault('JAX_PLATFORMS', 'cpu')
  proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
  results = [json.loads(line[len('RESULT '):]) for line in proc.stdout.splitlines()
             if line.startswith('RESULT ')]
  if proc.returncode or not results:
    results.append({'framework': part, 'error': f'exit {proc.returncode}: '
                    + proc.stderr.strip()[-1500:]})
  return results


def table(results: list[dict]) -> str:
  """The results as one Markdown table, PyTorch beside posejax's bf16 rows."""
  torch_rows = {(r['network'], r['batch']): r for r in results
                if r.get('framework') == 'pytorch' and 'images_per_s' in r}
  lines = ['| network | input | batch | dtype | posejax img/s | TFLOP/s | % of peak '
           '| XLA memory GiB | compile s | PyTorch AMP img/s | posejax / PyTorch |',
           '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|']
  ours = [r for r in results if r.get('framework') == 'posejax']
  networks = list(dict.fromkeys(r['network'] for r in ours))
  # Shown by network, float32 before bfloat16, small batch first.
  ours.sort(key=lambda r: (networks.index(r['network']), r['dtype'] != 'float32',
                           r['batch']))
  for r in ours:
    if 'error' in r:
      lines.append(f"| {r['network']} | | {r['batch']} | {r['dtype']} | {r['error']} "
                   '| | | | | | |')
      continue
    other = torch_rows.get((r['network'], r['batch'])) if r['dtype'] == 'bfloat16' else None
    util = r.get('utilization')
    lines.append(
        f"| {r['network']} | {r['input'][0]}x{r['input'][1]} | {r['batch']} | {r['dtype']} "
        f"| {r['images_per_s']:,.0f} | {r['tflops_per_s'] or 0:.1f} "
        f"| {'' if util is None else f'{100 * util:.1f}'} | {r['memory_gib']:.1f} "
        f"| {r['compile_s']:.0f} "
        f"| {'' if other is None else format(other['images_per_s'], ',.0f')} "
        f"| {'' if other is None else format(r['images_per_s'] / other['images_per_s'], '.2f') + 'x'} |")
  for r in results:
    if 'trace_error' in r:
      lines.append(f"\nThe trace of {r['network']} {r['dtype']} batch {r['batch']} was "
                   f"written but not summarised: {r['trace_error']}")
    if 'trace' in r:
      t = r['trace']
      lines.append(f"\nWhere the time goes: {r['network']} {r['dtype']} batch {r['batch']}, "
                   f"3 traced steps ({t['line']}, busy {100 * t['busy']:.0f}% of "
                   f"{1e3 * t['span_s']:.1f} ms; {t['file']})\n")
      lines += ['| op kind | ms (3 steps) | share |', '|---|---:|---:|']
      lines += [f'| {k} | {1e3 * sec:.2f} | {100 * f:.1f}% |' for k, sec, f in t['kinds']]
      lines += ['', '| op | ms (3 steps) | share |', '|---|---:|---:|']
      lines += [f'| {k} | {1e3 * sec:.2f} | {100 * f:.1f}% |' for k, sec, f in t['ops']]
  for r in results:
    if r.get('framework') == 'grouping' and 'speedup' in r:
      paf = r.get('codec') == 'part_affinity'
      lines.append(
          f"\nBottom-up decoding and grouping{' (part affinity fields)' if paf else ''}, "
          f"{r['size']}x{r['size']} maps, "
          f"{r['people']} people ({r['backend']}): posejax {r['posejax_ms']:.1f} ms, "
          f"{'the OpenPose port' if paf else 'the official'}"
          f"{chr(39)}s {'body.py' if paf else 'group.py'} transcribed "
          f"{r['reference_ms']:.1f} ms per image: {r['speedup']:.1f}x, the same people")
  errors = [r for r in results if r.get('framework') != 'posejax' and 'error' in r]
  lines += [f"\n{r['framework']} {r.get('network', '')} {r.get('batch', '')}: {r['error']}"
            for r in errors]
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--smoke', action='store_true',
                      help='tiny networks on the CPU: checks the script')
  parser.add_argument('--out', help='also write every result to this json file')
  parser.add_argument('--trace_dir', default='gpu_trace',
                      help='where the jax.profiler trace of HRNet-W32 bf16 goes '
                      '(TensorBoard or Perfetto open it; empty: no trace)')
  parser.add_argument('--part', choices=('jax', 'torch'), help=argparse.SUPPRESS)
  parser.add_argument('--budget_s', type=float, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.part == 'jax':
    return _jax_half(args.smoke, args.trace_dir or None, _Budget(args.budget_s))
  if args.part == 'torch':
    return _torch_half(args.smoke, _Budget(args.budget_s))
  start = time.perf_counter()
  trace_dir = os.path.abspath(args.trace_dir) if args.trace_dir else None
  results = _run_half('jax', args.smoke, trace_dir) + _run_half('torch', args.smoke)
  for codec in ('associative_embedding', 'part_affinity'):
    try:
      results.append(_grouping(args.smoke, codec))
    except subprocess.TimeoutExpired:
      results.append({'framework': 'grouping', 'error': f'{codec}: timed out after 180 s'})
  device = next((r['device'] for r in results if r.get('device')), 'unknown device')
  print(f'{device}, {time.perf_counter() - start:.0f} s in all\n')
  print(table(results))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(results, f, indent=1)


if __name__ == '__main__':
  main()
