"""The tf.data input pipeline (host CPU): records -> batches of the schema.

  top_down   one example per person instance: the training stream (augmented,
             resumable, each host's rows of every global batch) and the
             evaluation stream (annotated boxes or person detections)
  augment    crop geometry in TF ops and the training augmentation
  resample   crops of images: the whole-image warp and the windowed XLA
             resampler of training

Both streams emit the batches posejax/batches.py declares; they never render
targets (the codecs do, on device). A whole-image stream for bottom-up
networks goes beside `top_down` as a module of its own, with its schema in
posejax/batches.py.
"""

from posejax.data.pipeline.top_down import count_instances
from posejax.data.pipeline.top_down import eval_dataset
from posejax.data.pipeline.top_down import train_dataset

__all__ = ['count_instances', 'eval_dataset', 'train_dataset']
