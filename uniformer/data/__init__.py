"""Data sets: on-disk formats, synthetic stand-ins, checks and loaders.

Modules: ``images`` (strict image decoding), ``imagenet`` (ImageNet folder layout, dataset and loader),
``synth_imagenet`` (synthetic ImageNet-layout data), ``check`` (validate a data set), ``command``
(the ``uniformer data`` subcommand). Nothing is imported here so ``uniformer data check`` stays light.
"""
