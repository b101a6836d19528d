"""Reconcilers: read the object and what it depends on, render, apply, derive status, patch status.

Each is a plain function of (context, namespace, name), safe to call any number of times from any trigger (the
object's own handlers, its children's events, a referenced object's phase change, the resync timer).
"""
