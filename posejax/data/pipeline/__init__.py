"""The tf.data input pipeline (host CPU): records -> batches of the schema.

  top_down     one example per person instance: the training stream
               (augmented, resumable, each host's rows of every global
               batch) and the evaluation stream (annotated boxes or person
               detections)
  whole_image  one example per image, for bottom-up networks: the image,
               every person's keypoints and the ignore mask (augmented and
               resumable in training, as top_down)
  augment      crop geometry in TF ops and the training augmentation
  resample     crops of images: the whole-image warp and the windowed XLA
               resampler of training

All streams emit the batches posejax/batches.py declares; they never render
targets (the codecs do, on device). `train_stream` and `eval_stream` pick the one a codec
reads (`Codec.bottom_up`).
"""

from posejax.data.pipeline import top_down
from posejax.data.pipeline import whole_image
from posejax.data.pipeline.top_down import count_instances
from posejax.data.pipeline.top_down import eval_dataset
from posejax.data.pipeline.top_down import train_dataset


def train_stream(builder, config, codec, **kwargs):
  """The training stream `codec` reads: whole images or person crops."""
  module = whole_image if codec.bottom_up else top_down
  return module.train_dataset(builder, config, **kwargs)


def eval_stream(builder, config, codec, split=None, **kwargs):
  """The evaluation stream `codec` reads (whole images take no detections)."""
  if codec.bottom_up:
    kwargs.pop('detections', None)
    return whole_image.eval_dataset(builder, config, split, **kwargs)
  return top_down.eval_dataset(builder, config, split, **kwargs)


__all__ = ['count_instances', 'eval_dataset', 'eval_stream', 'train_dataset',
           'train_stream', 'whole_image']
