"""How several processes train together: the torchrun command line and the FSDP / DeepSpeed configurations.

All functions here are pure (environment and config in, argv or dict out) and table-tested. DeepSpeed is never
imported: its JSON config is plain data that transformers hands to DeepSpeed when it is installed.

Launcher environments: a PyTorchJob (Kubeflow training-operator) sets ``PET_NNODES``, ``PET_NODE_RANK``,
``PET_NPROC_PER_NODE``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT``; a plain indexed Job or a person sets
``NNODES``, ``NODE_RANK``, ``NPROC_PER_NODE``, ``MASTER_ADDR`` and ``MASTER_PORT``. The plain names win when both
are set. ``RANK`` is never read as the node rank: under PyTorchJob it is the pod's rank, under torchrun the
process's global rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_MASTER_PORT = 29500
# Set by torchrun in every worker: a process that sees it is already one of the ranks and must not re-launch.
WORKER_MARKERS = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK")


class LaunchError(ValueError):
    """The launcher environment is inconsistent (names the variable and what was expected)."""


@dataclass(frozen=True)
class Topology:
    """Where this node sits in the job."""

    nnodes: int
    node_rank: int
    nproc_per_node: int
    master_addr: str | None
    master_port: int

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def _env_int(env: Mapping[str, str], names: Sequence[str], default: int | None) -> int | None:
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError as exc:
                raise LaunchError(f"{name}={value!r}: expected an integer") from exc
    return default


def topology(env: Mapping[str, str], nproc_per_node: int | None, devices: int) -> Topology:
    """Read the job topology from the launcher environment.

    Args:
        env: the process environment (``os.environ`` at the edge, a dict in tests).
        nproc_per_node: processes per node asked for by the config (None = not set).
        devices: accelerators visible on this node (0 on CPU); the default process count when nothing is set.
    """
    nproc = nproc_per_node or _env_int(env, ("NPROC_PER_NODE", "PET_NPROC_PER_NODE"), None) or max(devices, 1)
    nnodes = _env_int(env, ("NNODES", "PET_NNODES"), 1) or 1
    node_rank = _env_int(env, ("NODE_RANK", "PET_NODE_RANK"), 0) or 0
    port = _env_int(env, ("MASTER_PORT", "PET_MASTER_PORT"), DEFAULT_MASTER_PORT) or DEFAULT_MASTER_PORT
    addr = env.get("MASTER_ADDR") or env.get("PET_MASTER_ADDR") or None
    if not 0 <= node_rank < nnodes:
        raise LaunchError(f"NODE_RANK={node_rank}: expected 0..{nnodes - 1} for NNODES={nnodes}")
    if nnodes > 1 and not addr:
        raise LaunchError(f"NNODES={nnodes} needs MASTER_ADDR (the rank-0 node's address)")
    return Topology(nnodes, node_rank, nproc, addr, port)


def is_worker(env: Mapping[str, str]) -> bool:
    """True inside a process started by torchrun."""
    return any(name in env for name in WORKER_MARKERS)


def torchrun_argv(env: Mapping[str, str], nproc_per_node: int | None, devices: int, python: str,
                  command: Sequence[str]) -> list[str] | None:
    """The command that re-runs ``command`` (kubetune's own arguments) under torchrun, or None for one process.

    One node without a master address uses ``--standalone`` (a free local rendezvous port, so parallel local
    runs never collide); otherwise the static rendezvous at MASTER_ADDR:MASTER_PORT with the node rank.
    """
    if is_worker(env):
        return None
    topo = topology(env, nproc_per_node, devices)
    if topo.world_size <= 1:
        return None
    argv = [python, "-m", "torch.distributed.run", f"--nproc-per-node={topo.nproc_per_node}"]
    if topo.nnodes == 1 and topo.master_addr is None:
        argv.append("--standalone")
    else:
        argv += [f"--nnodes={topo.nnodes}", f"--node-rank={topo.node_rank}",
                 f"--master-addr={topo.master_addr}", f"--master-port={topo.master_port}"]
    return [*argv, "-m", "kubetune.cli.main", *command]


def fsdp_config(layer_classes: Sequence[str], *, offload: bool, activation_checkpointing: bool) -> dict[str, Any]:
    """transformers ``fsdp_config`` for FSDP2 full sharding, wrapping each decoder layer.

    Activation checkpointing is done by FSDP itself (the Trainer's own flag would add a redundant all-gather);
    the full state dict is gathered on save so checkpoints and the final model load without FSDP.
    """
    if not layer_classes:
        raise LaunchError("fsdp: the model names no decoder layer class (_no_split_modules) to wrap")
    return {
        "version": 2,
        "reshard_after_forward": True,  # full shard: parameters are freed again after each layer's forward
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": list(layer_classes),
        "cpu_offload": offload,
        "activation_checkpointing": activation_checkpointing,
        "state_dict_type": "FULL_STATE_DICT",
        "cpu_ram_efficient_loading": False,
    }


def deepspeed_config(stage: int, *, offload: bool) -> dict[str, Any]:
    """A DeepSpeed ZeRO-0, -2 or -3 config; ``auto`` values are filled by transformers from the training args.

    ZeRO-3 gathers 16-bit weights on save so the final model is a normal HF checkpoint. ``offload`` moves the
    optimizer state (and, for ZeRO-3, the parameters) to CPU memory.
    """
    if stage not in (0, 2, 3):
        raise LaunchError(f"zero_stage: expected 0, 2 or 3, got {stage}")
    if offload and stage == 0:
        raise LaunchError("deepspeed: offloading needs ZeRO stage 2 or 3")
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": False,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == 0:
        zero = {"stage": 0}
    elif stage == 2:
        zero |= {"allgather_partitions": True, "allgather_bucket_size": 5e8, "reduce_scatter": True,
                 "round_robin_gradients": True}
    else:
        zero |= {"sub_group_size": 1e9, "stage3_prefetch_bucket_size": "auto",
                 "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
                 "stage3_max_reuse_distance": 1e9, "stage3_gather_16bit_weights_on_model_save": True}
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
                 "hysteresis": 2, "min_loss_scale": 1},
        "bf16": {"enabled": "auto"},
        "zero_optimization": zero,
    }
