"""Training and evaluation engine, generic over tasks: what differs per task (model, loss, metrics, data
adapters, eval protocol) comes from the task registry (``uniformer.tasks``).

One concept per module:

- ``distributed``   process group set-up from torchrun's environment, collective helpers;
- ``checkpointing`` atomic training checkpoints and RNG state capture / restore (``weights_only``-safe);
- ``recipe``        resolved config (params.yaml + per-model blocks + overrides) -> optimizer, LR schedule,
                    EMA, all from timm's factories;
- ``train``         ``uniformer train <dataset>``;
- ``evaluate``      ``uniformer eval <dataset>``;
- ``coco_eval``     COCO bbox / segm AP with pycocotools;
- ``seg_protocol`` / ``seg_metrics``   the published ADE20K test (resize, whole inference, MS+flip) and
                    aAcc / mIoU / mAcc from one confusion matrix;
- ``pose_protocol`` / ``pose_metrics`` the published COCO top-down test (crops, flip, decoding, OKS-NMS) and
                    keypoint AP (pycocotools).

The dense tasks' evaluation loops are ``evaluate``'s, with the task's meter (``tasks.segmentation.SegMeter``,
``tasks.pose.KeypointMeter``, ``tasks.detection``): one path for ``uniformer eval``, training's validation and
the tests.
"""
