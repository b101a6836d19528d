"""Training: one module per stage (pt, sft, ...) dispatched through ``kubetune.train.stages.STAGES``, over shared
model loading (``kubetune.model``), data (``kubetune.data``), checkpoints, callbacks and outputs."""
