"""The eval split's annotations as an in-memory COCO dict, for pycocotools.

The COCO metric scores detections against every annotation, missed people
included, so it needs the split's ground truth beyond the predicted
instances' own; the other metrics do not read it.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from posejax import data


def coco_ground_truth(builder, split: str) -> dict:
  """The split's annotations as an in-memory COCO dict, for pycocotools."""
  spec = data.keypoint_spec(builder)
  images, annotations = [], []
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  for record in ds.as_numpy_iterator():
    image_id = int(record['image/id'])
    images.append({'id': image_id})
    objs = record['objects']
    for i in range(len(objs['id'])):
      kps = np.concatenate(
          [objs['keypoints'][i], objs['visibility'][i][:, None]], axis=1)
      annotations.append({
          'id': int(objs['id'][i]),
          'image_id': image_id,
          'category_id': 1,
          'bbox': [float(v) for v in objs['bbox'][i]],
          'area': float(objs['area'][i]),
          'iscrowd': int(objs['iscrowd'][i]),
          'num_keypoints': int(objs['num_keypoints'][i]),
          'keypoints': [float(v) for v in kps.reshape(-1)],
      })
  return {'images': images, 'annotations': annotations,
          'categories': [spec.coco_category()]}
