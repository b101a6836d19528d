"""Kubernetes object names as the apiserver checks them, for places that turn names into file paths.

Names become folders and files (``<work-dir>/objects/<namespace>/<Kind>/<name>.json``, ``<output>/<name>-<uid8>/``,
``/mnt/pvc/<claim>``). The apiserver's rules already exclude ``/``, ``..`` and absolute paths, so a name that
passes them is safe as a path segment; locally nobody else checks, so these functions do.
"""

from __future__ import annotations

import re

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_RULE = "a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit, " \
             "at most 63 characters"
SUBDOMAIN_RULE = "a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', each dot-separated part " \
                 "starting and ending with a letter or digit, at most 253 characters"


def label_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 label (namespaces), or None when it is one."""
    if len(value) <= 63 and DNS1123_LABEL.match(value):
        return None
    return f"{value!r} is not {LABEL_RULE}"


def subdomain_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (names of custom resources), or None when it is one."""
    if len(value) <= 253 and DNS1123_SUBDOMAIN.match(value):
        return None
    return f"{value!r} is not {SUBDOMAIN_RULE}"


def uid8(uid: str) -> str:
    """The first eight characters of a uid (dashes dropped): the suffix that keeps output folders unique."""
    return uid.replace("-", "")[:8]


def output_folder(name: str, uid: str) -> str:
    """``<name>-<uid8>``: the fresh folder a producer writes under ``spec.output.uri``, never overwritten.

    The operator, ``kubetune run`` and ``kubetune export`` all name it here, so a producer's output is found
    wherever it ran.
    """
    return f"{name}-{uid8(uid)}"
