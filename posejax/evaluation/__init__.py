"""Metrics, one family per module.

`coco` (OKS AP via pycocotools, rescoring, OKS-NMS), `pck` (generic PCK),
`mpii` (PCKh), `fashionai` (NE), `faces` (NME, failure rate, CED AUC, Kaggle
RMSE).
"""
