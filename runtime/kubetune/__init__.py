"""kubetune: LLM fine-tuning as a declarative Kubernetes service.

The package is layered: ``kubetune.api`` (typed custom resources, torch-free) sits at the bottom; the runtime
modules (config, data, model, train, export, serve) build on it; the operator package ``kubetune_operator``
imports only the API and config layers.
"""

__version__ = "0.1.0"
