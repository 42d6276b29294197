r"""Official PyTorch checkpoints -> a posejax run directory.

  pip install -e '.[torch]'
  python -m posejax.import_torch --config=configs/hrnet_coco.py:official \
      --checkpoint=pose_hrnet_w32_256x192.pth --workdir=runs/hrnet_w32_official

writes the converted weights as the step-0 Orbax checkpoint of `--workdir`
(with a fresh optimizer state for the config's optimizer). Then

  python -m posejax.eval --config=configs/hrnet_coco.py:official --workdir=runs/hrnet_w32_official

evaluates them, and `python -m posejax.main` with the same config and workdir
fine-tunes from them (it resumes from the latest checkpoint, step 0). The
`official` variant of the COCO recipes reads and renders heatmaps on the
official code's grid (`codecs`, grid='official') and shifts flipped maps as
its evaluation does; HRNet and SimpleBaselines checkpoints need it.

Supported layouts: the official deep-high-resolution-net.pytorch HRNet,
microsoft/human-pose-estimation.pytorch SimpleBaselines and
princeton-vl/pytorch_stacked_hourglass (posejax/checkpoints/layouts.py; the
conversion is posejax/checkpoints/official.py).
"""

from absl import flags

from posejax import command
from posejax.checkpoints import official


def main(values):
  path = official.import_checkpoint(values.config, values.checkpoint,
                                    values.workdir)
  print(f'Wrote the step-0 checkpoint to {path}.')
  config = values.config
  if (config.model.name in official.OFFICIAL_GRID_MODELS
      and config.codec.grid != 'official'):
    print('Note: networks trained by the official code put heatmap pixel j on '
          'input pixel 4j (posejax: 4j + 1.5) and the box centre on input '
          'pixel W/2 (posejax: (W-1)/2). Evaluate and fine-tune them with '
          "the recipes' `official` variant (e.g. "
          '--config=configs/hrnet_coco.py:official; '
          'posejax.config_lib.official_inference lists its fields); '
          'otherwise every keypoint lands about 2 input pixels off.')


if __name__ == '__main__':
  command.define_run_flags(workdir='New run directory to write.')
  flags.DEFINE_string('checkpoint', None, 'Official PyTorch .pth/.pt file.')
  command.run(main, required=['config', 'checkpoint', 'workdir'],
              huge_pages=False)
