"""Training and evaluation engine (image classification).

One concept per module:

- ``distributed``   process group set-up from torchrun's environment, collective helpers;
- ``checkpointing`` atomic training checkpoints and RNG state capture / restore (``weights_only``-safe);
- ``recipe``        resolved config (params.yaml + per-model blocks + overrides) -> model, transforms,
                    Mixup, loss, optimizer, LR schedule, EMA, all from timm's factories;
- ``metrics``       top-k / per-class accuracy counts;
- ``train``         ``uniformer train <table>``;
- ``evaluate``      ``uniformer eval <table>``;
- ``loader_bench``  data-loader throughput (decode + training augmentation).
- ``seg_protocol`` / ``seg_metrics``   the published ADE20K test (resize, whole inference, MS+flip) and
                    aAcc / mIoU / mAcc from one confusion matrix;
- ``pose_protocol`` / ``pose_metrics`` the published COCO top-down test (crops, flip, decoding, OKS-NMS) and
                    keypoint AP (pycocotools).
"""
