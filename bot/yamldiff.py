"""Unified YAML diffs of Kubernetes objects (before/after a change), for approval messages and the CLI.

Pure functions. Multi-line strings (ConfigMap files) are dumped as YAML literal blocks, so a diff of a
ConfigMap shows the changed lines of the file rather than one long quoted scalar. Fields that change on
every write and say nothing about the change (managedFields, resourceVersion, generation, timestamps,
status) are left out.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from typing import Any

import yaml

_NOISY_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink")


class _LiteralDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings as `|` blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        # A literal block cannot carry trailing spaces on a line reliably; fall back to quoting then.
        style = "|" if not any(line != line.rstrip(" \t") for line in value.splitlines()) else '"'
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_LiteralDumper.add_representer(str, _str_representer)


def to_yaml(obj: Any) -> str:
    """YAML text of a JSON-like value, keys in their original order, multi-line strings as blocks."""
    return yaml.dump(
        obj, Dumper=_LiteralDumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def strip_noise(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a Kubernetes object without the fields that change on every write."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    metadata = out.get("metadata")
    if isinstance(metadata, dict):
        for key in _NOISY_METADATA:
            metadata.pop(key, None)
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
            if not annotations:
                metadata.pop("annotations")
    return out


def unified_yaml_diff(
    before: Mapping[str, Any], after: Mapping[str, Any], *, label: str, context: int = 3
) -> str:
    """Unified diff of two objects as YAML; empty string when they are the same."""
    a = to_yaml(strip_noise(before)).splitlines(keepends=True)
    b = to_yaml(strip_noise(after)).splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(a, b, fromfile=f"{label} (live)", tofile=f"{label} (after)", n=context)
    )
