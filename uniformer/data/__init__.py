"""Data sets: on-disk formats, synthetic stand-ins, checks and loaders.

Modules: ``images`` (strict image decoding), ``loader`` (the skip-counting ``build_loader`` every data set
uses), ``imagenet`` (ImageNet folder layout and dataset), ``synth_imagenet`` (synthetic ImageNet-layout data),
``check`` (validate an ImageNet set); video: ``video`` (class-index files, PyAV decoding, dense / segment
sampling, multi-view clips, ``VideoDataset``), ``video_augment`` (the official clip augmentation),
``kinetics`` and ``something`` (the Kinetics-400/600 and Something-Something V1/V2 list formats),
``synth_video`` (synthetic sets in those formats), ``check_video`` (validate a video set); ``synth_out`` (the
synthetic writers' output folder; ``data_source``: synthetic or real), ``timm_fixes`` (timm ops under the pinned
Pillow), ``transforms`` (the image transforms of a recipe); dense: ``coco`` / ``synth_coco`` / ``check_coco`` (COCO
instances), ``ade20k`` / ``synth_ade20k`` / ``check_ade20k`` (ADE20K layout, synthetic set, checks) and
``coco_pose`` / ``synth_coco_pose`` / ``check_coco_pose`` (COCO keypoints + person boxes). Which data set uses which
format, checker and writer is declared in ``uniformer.tasks``; the ``uniformer data`` subcommand is
``uniformer.commands.data``. Nothing is imported here so ``uniformer data check`` stays light.
"""
