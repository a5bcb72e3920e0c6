"""Training infrastructure shared by every stage, re-exported from ``distributed``, ``streams``, ``optim``,
``checkpoint`` and ``logger``. See ``docs/architecture.md``."""

from __future__ import annotations

from .checkpoint import CHECKPOINT_FILES, MUTABLE_KEYS, Run, load_model_weights, model_digest
from .distributed import (DistEnv, _all_gather, _broadcast, all_reduce_grads, cleanup_distributed, no_sync,
                          setup_distributed, training_process, wrap_ddp)
from .logger import TrainLogger, peak_memory
from .optim import autocast, build_optimizer, build_scheduler, make_scaler, optimizer_step, seeded, step_generator
from .streams import BatchStream, DataSource, EpochStream, OnTheFlyStream, make_stream, resolve_data, resolve_shards

__all__ = ["DistEnv", "setup_distributed", "cleanup_distributed", "training_process", "resolve_shards", "BatchStream",
           "DataSource",
           "resolve_data", "EpochStream", "OnTheFlyStream", "make_stream", "seeded",
           "step_generator", "autocast", "make_scaler", "build_optimizer", "build_scheduler", "optimizer_step",
           "wrap_ddp", "no_sync", "all_reduce_grads", "load_model_weights", "Run", "TrainLogger", "model_digest",
           "peak_memory", "MUTABLE_KEYS", "CHECKPOINT_FILES", "_all_gather", "_broadcast"]
