"""Diagnostic bundles: a folder a user can also make by hand with kubectl.

Layout (read by `read_bundle`, written by `write_bundle`):
- any `*.yaml`, `*.yml` or `*.json` file (any depth, except under the top-level `logs/` and `hosts/`)
  holds Kubernetes objects: one object, a `kind: List` as `kubectl get -o yaml` prints it, or
  several YAML documents. Unknown kinds are ignored.
- `logs/<namespace>/<pod>/<container>.log` is a container's current log,
  `logs/<namespace>/<pod>/<container>.previous.log` the previous (crashed) instance's.
- `hosts/<host>.yaml` (optional) holds host facts: `paths: [{path, uid, gid, mode}]`.
- `observed-at.txt` (optional) is when the evidence was collected (RFC 3339); without it, the
  newest timestamp in the objects stands in. `collection-errors.txt` (optional) lists what could not
  be read, one per line. `write_bundle` writes both, so a saved bundle diagnoses like the live cluster
  did: the same "is this crash recent?" answers, and no absence read as proof where a list was forbidden.

A file that cannot be read or understood raises `BundleError` naming the file: a diagnosis from a
half-read bundle would be wrong without saying so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bot.evidence import Evidence, HostFacts, LogKey, paused_gc
from bot.k8s_objects import (
    ObjectError,
    ParsedObject,
    build_evidence,
    expand_lists,
    expand_lists_kinds,
    parse_host_facts,
    parse_object,
    parse_time,
    to_manifest,
)
from bot.redact import redact

# libyaml's loader is ~10x faster on large bundles; fall back to the pure-Python one.
_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YamlDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

OBJECT_SUFFIXES = (".yaml", ".yml", ".json")
ANALYSIS_FILE = "00-ANALYSIS-AND-RECOMMENDATIONS.txt"
OBSERVED_AT_FILE = "observed-at.txt"
ERRORS_FILE = "collection-errors.txt"
MAX_LOG_LINES = 2000  # per log file; a diagnosis reads the tail, a bundle may hold a huge log


class BundleError(Exception):
    """A bundle (or one of its files) that cannot be read. The message names the file."""


@dataclass(frozen=True)
class RawBundle:
    """A bundle's contents before typing: object dicts (with the file each came from), logs, hosts."""

    objects: tuple[tuple[Path, Mapping[str, Any]], ...]
    logs: Mapping[LogKey, tuple[str, ...]]
    hosts: tuple[HostFacts, ...]
    errors: tuple[str, ...] = ()
    observed_at: datetime | None = None


def _object_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d not in ("logs", "hosts")]
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(OBJECT_SUFFIXES) and not name.startswith("."):
                yield here / name


def _load_documents(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read: {exc}") from None
    if path.suffix == ".json":
        try:
            return [json.loads(text)] if text.strip() else []
        except json.JSONDecodeError as exc:
            raise BundleError(f"{path}: not valid JSON: {exc}") from None
    try:
        return list(yaml.load_all(text, Loader=_YamlLoader))
    except yaml.YAMLError as exc:
        raise BundleError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None


def _file_objects(path: Path) -> Iterator[tuple[Mapping[str, Any], str]]:
    """(object, kind its list names) for each object in one file, decoded as they are reached: a
    JSON List's items one at a time, a YAML file one document at a time (a List's items handed out
    and dropped as they go), so reading never holds a whole file's dicts next to their typed form."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read: {exc}") from None
    try:
        if path.suffix == ".json":
            yield from _json_objects(text)
            return
        try:
            for doc in yaml.load_all(text, Loader=_YamlLoader):
                yield from expand_lists_kinds(doc)
        except yaml.YAMLError as exc:
            raise BundleError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON: {exc}") from None
    except ObjectError as exc:
        raise BundleError(f"{path}: {exc}") from None


_DECODER = json.JSONDecoder()
_BLANK = " \t\n\r"


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _BLANK:
        i += 1
    return i


def _expect(text: str, i: int, chars: str) -> str:
    if i >= len(text) or text[i] not in chars:
        what = repr(text[i]) if i < len(text) else "end of file"
        raise json.JSONDecodeError(f"expected {' or '.join(repr(c) for c in chars)}, got {what}", text, i)
    return text[i]


def _json_objects(text: str) -> Iterator[tuple[Mapping[str, Any], str]]:
    """The objects of one JSON document. The top-level object's `items` array is decoded one
    element at a time (the stdlib's C scanner per item), so a 10,000-pod `kubectl get -o json` never
    exists as one tree of dicts. Items without their own `kind` wait until the List's `kind` is read
    (kubectl prints `kind` after `items`); the API's lists are the only ones written that way."""
    i = _skip(text, 0)
    if i == len(text):
        return
    if text[i] != "{":
        doc, end = _DECODER.raw_decode(text, i)
        if _skip(text, end) != len(text):
            raise json.JSONDecodeError("Extra data", text, _skip(text, end))
        yield from expand_lists_kinds(doc)
        return
    top: dict[str, Any] = {}
    streamed = False
    kindless: list[Any] = []
    i = _skip(text, i + 1)
    if text[i : i + 1] != "}":
        while True:
            _expect(text, i, '"')
            key, i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
            _expect(text, i, ":")
            i = _skip(text, i + 1)
            if key == "items" and text[i : i + 1] == "[":
                streamed = True
                i = _skip(text, i + 1)
                if text[i : i + 1] == "]":
                    i += 1
                else:
                    while True:
                        item, i = _DECODER.raw_decode(text, i)
                        if isinstance(item, dict) and item.get("kind"):
                            yield from expand_lists_kinds(item)
                        else:
                            kindless.append(item)
                        i = _skip(text, i)
                        if _expect(text, i, ",]") == "]":
                            i += 1
                            break
                        i = _skip(text, i + 1)
            else:
                top[key], i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
            if _expect(text, i, ",}") == "}":
                break
            i = _skip(text, i + 1)
    end = _skip(text, i + 1)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    if not streamed:
        yield from expand_lists_kinds(top)
        return
    top["items"] = kindless
    yield from expand_lists_kinds(top)


def _read_logs(root: Path) -> dict[LogKey, tuple[str, ...]]:
    logs: dict[LogKey, tuple[str, ...]] = {}
    base = root / "logs"
    if not base.is_dir():
        return logs
    for path in sorted(base.rglob("*.log")):
        rel = path.relative_to(base).parts
        if len(rel) != 3:
            raise BundleError(f"{path}: log files go in logs/<namespace>/<pod>/<container>[.previous].log")
        namespace, pod, filename = rel
        previous = filename.endswith(".previous.log")
        container = filename[: -len(".previous.log")] if previous else filename[: -len(".log")]
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise BundleError(f"{path}: cannot read: {exc}") from None
        lines = text.splitlines()[-MAX_LOG_LINES:]
        logs[LogKey(namespace, pod, container, previous)] = tuple(redact(line) for line in lines)
    return logs


def _read_hosts(root: Path) -> list[HostFacts]:
    hosts: list[HostFacts] = []
    base = root / "hosts"
    if not base.is_dir():
        return hosts
    for path in sorted(base.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        try:
            # No type guessing: `mode: 0755` stays the text "0755" (octal), not YAML's 493-or-755 guess.
            doc = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise BundleError(f"{path}: cannot read host facts: {exc}".replace("\n", " ")) from None
        try:
            hosts.append(parse_host_facts(path.stem, doc))
        except ObjectError as exc:
            raise BundleError(f"{path}: {exc}") from None
    return hosts


def _read_text(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read: {exc}") from None


def _read_observed_at(root: Path) -> datetime | None:
    text = _read_text(root / OBSERVED_AT_FILE)
    if text is None or not text.strip():
        return None
    try:
        return parse_time(text.strip())
    except ObjectError as exc:
        raise BundleError(f"{root / OBSERVED_AT_FILE}: {exc}") from None


def _bundle_root(directory: str | os.PathLike[str]) -> Path:
    root = Path(directory)
    if not root.exists():
        raise BundleError(f"{root}: no such bundle directory")
    if not root.is_dir():
        raise BundleError(f"{root}: a bundle is a directory")
    return root


def read_bundle_raw(directory: str | os.PathLike[str]) -> RawBundle:
    """The bundle's object dicts, logs and host facts, with a clear error per unreadable file."""
    root = _bundle_root(directory)
    objects: list[tuple[Path, Mapping[str, Any]]] = []
    for path in _object_files(root):
        for doc in _load_documents(path):
            try:
                objects.extend((path, obj) for obj in expand_lists(doc))
            except ObjectError as exc:
                raise BundleError(f"{path}: {exc}") from None
    errors = _read_text(root / ERRORS_FILE) or ""
    return RawBundle(
        objects=tuple(objects),
        logs=_read_logs(root),
        hosts=tuple(_read_hosts(root)),
        errors=tuple(line for line in errors.splitlines() if line.strip()),
        observed_at=_read_observed_at(root),
    )


def read_bundle(
    directory: str | os.PathLike[str], *, namespaces: Iterable[str] = (), keep_raw: bool = False
) -> Evidence:
    """A bundle as Evidence (offline cluster). `namespaces` narrows it; empty means all it holds.
    `keep_raw` keeps every object's raw form (to write the evidence back with `write_bundle`)."""
    # A bundle is read by the one-shot CLI, which keeps the evidence until it exits: freeze it.
    with paused_gc(keep=True):
        return _read_bundle(directory, namespaces, keep_raw)


def _read_bundle(directory: str | os.PathLike[str], namespaces: Iterable[str], keep_raw: bool) -> Evidence:
    root = _bundle_root(directory)
    wanted = set(namespaces)
    parsed: list[ParsedObject] = []
    # Each object is parsed as soon as it is decoded and its dict dropped (unless `keep_raw`): the
    # typed form is a fraction of the JSON's size, and only one file's text is held at a time.
    for path in _object_files(root):
        for obj, kind in _file_objects(path):
            try:
                item = parse_object(obj, default_kind=kind, keep_raw=keep_raw)
            except ObjectError as exc:
                raise BundleError(f"{path}: {exc}") from None
            if item is None:
                continue
            ns = item.meta.namespace
            if wanted and ns is not None and ns not in wanted:
                continue
            parsed.append(item)
    logs = {k: v for k, v in _read_logs(root).items() if not wanted or k.namespace in wanted}
    errors = _read_text(root / ERRORS_FILE) or ""
    return build_evidence(
        parsed,
        namespaces=sorted(wanted),
        logs=logs,
        hosts=_read_hosts(root),
        errors=tuple(line for line in errors.splitlines() if line.strip()),
        observed_at=_read_observed_at(root),
    )


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

_FILE_NAMES: Mapping[str, str] = {
    "Pod": "pods",
    "Event": "events",
    "Service": "services",
    "Endpoints": "endpoints",
    "StatefulSet": "statefulsets",
    "Deployment": "deployments",
    "DaemonSet": "daemonsets",
    "ReplicaSet": "replicasets",
    "ConfigMap": "configmaps",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "PersistentVolume": "persistentvolumes",
    "Node": "nodes",
    "StorageClass": "storageclasses",
    "EndpointSlice": "endpointslices",
    "Job": "jobs",
    "CronJob": "cronjobs",
    "Ingress": "ingresses",
    "IngressClass": "ingressclasses",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ResourceQuota": "resourcequotas",
    "LimitRange": "limitranges",
    "NetworkPolicy": "networkpolicies",
    "Secret": "secrets",
}


def _safe_part(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise BundleError(f"refusing to write a file for an unsafe name {name!r}")
    return name


def write_bundle(evidence: Evidence, directory: str | os.PathLike[str], *, analysis: str = "") -> Path:
    """Write `evidence` as a bundle that `read_bundle` reads back to the same findings.

    Refuses a directory that exists and is not empty (never overwrites someone's files)."""
    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise BundleError(f"{root}: exists and is not an empty directory; choose a new one")
    # Owner-only: a bundle holds ConfigMaps and pod specs exactly as the cluster has them (logs are redacted).
    root.mkdir(parents=True, exist_ok=True, mode=0o700)

    groups: dict[tuple[str, str], list[Any]] = {}
    every: list[Iterable[Any]] = [
        evidence.pods,
        evidence.events,
        evidence.services,
        evidence.endpoints,
        evidence.workloads,
        evidence.configmaps,
        evidence.pvcs,
        evidence.pvs,
        evidence.nodes,
        evidence.storage_classes,
        evidence.jobs,
        evidence.cronjobs,
        evidence.ingresses,
        evidence.ingress_classes,
        evidence.hpas,
        evidence.pdbs,
        evidence.resource_quotas,
        evidence.limit_ranges,
        evidence.network_policies,
        evidence.secrets,  # names only: to_manifest writes a Secret's name and namespace, nothing else
    ]
    for objects in every:
        for obj in objects:
            if getattr(obj, "raw", None) == {}:
                # Kinds with a raw form are written from it: typed fields alone would lose what no
                # handler reads today. Said, not silently skipped.
                raise BundleError(
                    f"{obj.meta.namespace or 'cluster'}/{obj.meta.name}: the evidence was read without "
                    "its raw objects; collect or read it with keep_raw=True to write a bundle"
                )
            raw = to_manifest(obj)
            if not raw.get("metadata"):
                continue
            kind = str(raw.get("kind") or "")
            folder = obj.meta.namespace or "cluster"
            groups.setdefault((folder, _FILE_NAMES.get(kind, kind.lower() or "objects")), []).append(raw)
    for (folder, name), items in sorted(groups.items()):
        target = root / _safe_part(folder) / f"{name}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        target.write_text(
            yaml.dump(doc, Dumper=_YamlDumper, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )

    for key, lines in sorted(evidence.logs.items()):
        suffix = ".previous.log" if key.previous else ".log"
        path = (
            root
            / "logs"
            / _safe_part(key.namespace)
            / _safe_part(key.pod)
            / (_safe_part(key.container) + suffix)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    for host in evidence.hosts:
        path = root / "hosts" / f"{_safe_part(host.host)}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        facts = {
            "paths": [
                {
                    "path": f.path,
                    **({"uid": f.uid} if f.uid is not None else {}),
                    **({"gid": f.gid} if f.gid is not None else {}),
                    **({"mode": f"{f.mode:04o}"} if f.mode is not None else {}),
                }
                for f in host.paths
            ]
        }
        path.write_text(yaml.dump(facts, Dumper=_YamlDumper, sort_keys=False), encoding="utf-8")

    if evidence.observed_at is not None:
        (root / OBSERVED_AT_FILE).write_text(evidence.observed_at.isoformat() + "\n", encoding="utf-8")
    if evidence.errors:
        (root / ERRORS_FILE).write_text("".join(e + "\n" for e in evidence.errors), encoding="utf-8")
    if analysis:
        (root / ANALYSIS_FILE).write_text(analysis, encoding="utf-8")
    return root
