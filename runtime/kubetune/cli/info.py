"""`kubetune version` and `kubetune env`."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform

import kubetune

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "kopf", "kubernetes", "pydantic",
            "deepspeed", "bitsandbytes", "flash-attn", "liger-kernel", "vllm")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    del parser, command


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def accelerators() -> str:
    """Describe the GPUs torch sees, without importing torch when it is not installed."""
    if _version("torch") == "not installed":
        return "unknown (torch not installed)"
    import torch  # the env command is the one place the CLI shell touches torch, and only when asked

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"{len(names)} CUDA device(s): {', '.join(names)}"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "Apple MPS"
    return "none (CPU only)"


def run(args: argparse.Namespace, command: str) -> int:
    del args
    if command == "version":
        print(f"kubetune {kubetune.__version__}")
        return 0
    print(f"kubetune     {kubetune.__version__}")
    print(f"python       {platform.python_version()} ({platform.machine()}, {platform.system()})")
    for dist in PACKAGES:
        print(f"{dist:<12} {_version(dist)}")
    print(f"accelerator  {accelerators()}")
    return 0
