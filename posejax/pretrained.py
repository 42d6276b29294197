r"""An ImageNet checkpoint as a file that loads without torch.

  python -m posejax.pretrained --input=hrnet_w32-36af842e.pth --output=hrnet_w32.npz

rewrites a `.pth`/`.pt` state dict (read with torch) as `.npz` or
`.safetensors` with the same keys, which `config.model.pretrained` takes
without torch installed. How a run starts from such a checkpoint:
posejax/checkpoints/imagenet.py.
"""

from absl import flags

from posejax import command
from posejax.checkpoints import imagenet


def main(values):
  if not values.output.endswith(('.npz', '.safetensors')):
    raise ValueError('--output must end in .npz or .safetensors.')
  count = imagenet.convert_checkpoint(values.input, values.output)
  print(f'Wrote {count} tensors to {values.output}.')


if __name__ == '__main__':
  flags.DEFINE_string('input', None, 'A .pth/.pt state dict (needs torch).')
  flags.DEFINE_string('output', None, 'The .npz or .safetensors file to write.')
  command.run(main, required=['input', 'output'], huge_pages=False)
