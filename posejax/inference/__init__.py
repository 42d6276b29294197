"""Running a trained network: the jitted prediction, the Predictor, media.

  predict_fn   (variables, uint8 crops) -> keypoints in input pixels and
               scores: the model, optional flip test and the codec's decoding
               in one jitted function, shared by evaluation and the Predictor
  predictor    `Predictor`: keypoints for whole images and boxes, in image
               pixels (notebooks, `python -m posejax.predict`)
  media        reading images, folders, videos and box files; HOG people boxes

No TensorFlow.
"""
