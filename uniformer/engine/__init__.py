"""Training and evaluation engine, generic over tasks: what differs per task (model, loss, metrics, data
adapters, eval protocol) comes from the task registry (``uniformer.tasks``).

One concept per module:

- ``distributed``   process group set-up from torchrun's environment, collective helpers;
- ``checkpointing`` atomic training checkpoints and RNG state capture / restore (``weights_only``-safe);
- ``recipe``        resolved config (params.yaml + per-model blocks + overrides) -> optimizer, LR schedule,
                    EMA, all from timm's factories;
- ``train``         ``uniformer train <dataset>``;
- ``evaluate``      ``uniformer eval <dataset>``.
"""
