"""Evaluation in one home: prediction over a split, post-processing, metrics.

The run's path: `predict_split` (the jitted prediction over the eval split's
crops, in batches, gathered over processes) -> `postprocess` (instance
rescoring, OKS-NMS) -> a scorer of `METRICS` -> `evaluator` (the files and
pictures of `<workdir>/eval/step_<N>/`; one `Evaluator` per run).
`ground_truth` reads the split's annotations for pycocotools; `detections`
reads person-detection files; `predictions` holds the `Predictions` every
scorer takes. The metric families, one a module: `coco` (OKS AP via
pycocotools, rescoring, OKS-NMS), `pck` (generic PCK), `mpii` (PCKh),
`fashionai` (NE), `faces` (NME, failure rate, CED AUC, Kaggle RMSE).
This package's __init__ imports no TensorFlow; `evaluator`,
`predict_split` and `ground_truth` read the records and do.

A scorer is `score(predictions, spec, ground_truth) -> {name: float}`:
`predictions` a `Predictions` after `postprocess.postprocess`, `spec` the
dataset's `KeypointSpec`, and `ground_truth()` the eval split's annotations as
a COCO dict, read only by scorers that need more than the predicted
instances' own ground truth (COCO AP counts missed people). The flat dict goes
as it is into metrics.json and the clu writers:

  coco          AP, AP50, AP75, APm, APl, AR, ... (pycocotools OKS), and
                PCK@0.1 (box-normalised) with ground-truth boxes
  pckh          PCKh@0.5 and PCKh@0.1 (the official mean, without pelvis and
                thorax), per group ('PCKh@0.5/Wrist'), and over all joints
                ('PCKh@0.5/Mean_all')
  fashionai_ne  NE and NE/<category>, in percent
  nme           NME and FR@0.1 in percent, AUC@0.1 in [0, 1]; on WFLW also
                per attribute subset ('NME/pose', 'FR@0.1/pose', ...)
  rmse          RMSE and RMSE/<keypoint>, in pixels of the original image

Each dataset names its native metric (`METRIC` on its builder, posejax/data);
`config.eval.metric` overrides it.
"""

from posejax.evaluation import coco
from posejax.evaluation import faces
from posejax.evaluation import fashionai
from posejax.evaluation import mpii

METRICS = {
    'coco': coco.score,
    'pckh': mpii.score,
    'fashionai_ne': fashionai.score,
    'nme': faces.score_nme,
    'rmse': faces.score_rmse,
}
