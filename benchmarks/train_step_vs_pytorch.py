r"""CPU train-step seconds of posejax and of a PyTorch module of the same structure.

  python benchmarks/train_step_vs_pytorch.py --model=cpn:r50 [--batch=8 --runs=2 --steps=5]

Each run is one child process per framework, alternated (posejax, PyTorch,
posejax, PyTorch, ...), because this kind of machine's speed drifts between
runs: compare the two columns of the same run. posejax: `posejax.benchmark`
(the real `train_step.jit_train_step`: targets rendered on device, forward,
backward, Adam; float32, device-resident random batches), median of
`--steps` after one warm-up. PyTorch: tests/torch_reference.py's module of
the official structure (CPN: the PyTorch port's; MSPN: the official code's;
SimpleBaseline, HRNet), float32, Adam, MSE of every output against given
random targets, on as many threads as JAX's CPU client uses (all cores),
median of the same number of steps after one warm-up. Prints one JSON line
per run and a table; needs PyTorch, not TensorFlow.
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


def _torch_module(model: str):
  sys.path.insert(0, os.path.join(REPO, 'tests'))
  import torch_reference as ref  # pylint: disable=g-import-not-at-top
  name, preset = model.split(':')
  if name == 'cpn':
    blocks = {'r50': (3, 4, 6, 3), 'r101': (3, 4, 23, 3)}[preset]
    return ref.TorchCPN(blocks=blocks)
  if name == 'mspn':
    return ref.TorchMSPN(stages=int(preset[0]))
  if name == 'simple_baseline' and preset == 'r50':
    return ref.TorchPoseResNet((3, 4, 6, 3), 64, (256, 256, 256), (4, 4, 4), 17)
  if name == 'hrnet' and preset == 'w32':
    return ref.TorchPoseHRNet(17, 64, 4, (32, 64, 128, 256), (1, 4, 3), 4)
  raise ValueError(f'No PyTorch module for {model!r}.')


def _outputs(out):
  """Every output tensor of a module's forward, flattened."""
  if isinstance(out, (list, tuple)):
    return [t for o in out for t in _outputs(o)]
  return [out]


def torch_seconds(model: str, batch: int, size, steps: int) -> float:
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  module = _torch_module(model).train()
  optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
  x = torch.randn(batch, 3, *size)
  targets = [torch.rand_like(o) for o in _outputs(module(x))]

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = sum(((o - t) ** 2).mean() for o, t in zip(_outputs(module(x)), targets))
    loss.backward()
    optimizer.step()

  step()  # warm-up
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def posejax_seconds(model: str, batch: int, size, steps: int) -> dict:
  sys.path.insert(0, REPO)
  from posejax import benchmark  # pylint: disable=g-import-not-at-top
  r = benchmark.benchmark(model, batch, size, 'float32', num_keypoints=17,
                          steps=steps, warmup=1, log=None, forward=False)
  return {'seconds': batch / r['train']['images_per_s'],
          'compile_s': r['train']['compile_s']}


def _child(framework: str, args) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), f'--model={args.model}',
         f'--batch={args.batch}', f'--input={args.input}', f'--steps={args.steps}',
         f'--child={framework}']
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith('{')]
  if proc.returncode or not lines:
    raise RuntimeError(f'{framework} run failed (exit {proc.returncode}): '
                       + proc.stderr.strip()[-1500:])
  return json.loads(lines[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', default='cpn:r50')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--input', default='256x192')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--runs', type=int, default=2)
  parser.add_argument('--child', choices=('posejax', 'pytorch'), help=argparse.SUPPRESS)
  args = parser.parse_args()
  size = tuple(int(v) for v in args.input.split('x'))
  if args.child == 'posejax':
    print(json.dumps(posejax_seconds(args.model, args.batch, size, args.steps)))
    return
  if args.child == 'pytorch':
    print(json.dumps({'seconds': torch_seconds(args.model, args.batch, size, args.steps)}))
    return
  rows = []
  for run in range(args.runs):
    ours = _child('posejax', args)
    theirs = _child('pytorch', args)
    row = {'model': args.model, 'batch': args.batch, 'input': args.input, 'run': run,
           'posejax_s': ours['seconds'], 'compile_s': ours['compile_s'],
           'pytorch_s': theirs['seconds']}
    print(json.dumps(row), flush=True)
    rows.append(row)
  print(f'\n| {args.model} {args.input}, batch {args.batch} | posejax train step '
        '| PyTorch train step | PyTorch / posejax |\n|---|---:|---:|---:|')
  for r in rows:
    print(f"| run {r['run'] + 1} | {r['posejax_s']:.2f} s (compile {r['compile_s']:.0f} s) "
          f"| {r['pytorch_s']:.2f} s | {r['pytorch_s'] / r['posejax_s']:.2f}x |")


if __name__ == '__main__':
  main()
