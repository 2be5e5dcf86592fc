"""The task registry: every task, data set and paper table, each declared once (see ``base``).

Adding a data set: an adapter (format reader: ``classes``, ``train_set``, ``val_set``, ``test_set``, ...; copy
``image_classification.ImageData``), then ``register_dataset(DatasetSpec(...))`` with its checker and synthetic
writer, and ``data.<name>`` / ``train.<name>`` / ``eval.<name>`` blocks in params.yaml. Adding a task: a
``Task`` subclass (``classification.ClassificationTask`` is the worked example) in its own module, imported
below, or from a plugin module named in ``$UNIFORMER_PLUGINS`` (``tests/toy_task.py`` is a complete one).
"""
# the built-ins, in the paper's table order: ImageNet, Kinetics, Something-Something, COCO, ADE20K, COCO pose
from . import image_classification, video_classification, detection, segmentation, pose  # noqa: F401, I001
from .base import (  # noqa: F401  (the registry API)
    RESULTS, Adapter, Column, checkers, register_data_tools, DataAction, DatasetSpec, TableSpec, Task, dataset_names, datasets, get_dataset,
    get_table, get_task, load_plugins, open_data, register_dataset, register_table, register_task, synth_writers,
    data_source, table_of, tables, task_of)

load_plugins()
