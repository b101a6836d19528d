"""The resource lifecycle, free of torch and of any Kubernetes client: status derived from observations.

The operator (children observed through the apiserver) and ``kubetune run`` (local processes and records) are two
executors of the same lifecycle; both call these functions, so the same observations give the same status.
"""
