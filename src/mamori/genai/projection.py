"""Field projection by data classification, applied at the tool boundary.

A :class:`ClassificationSchema` labels JSON paths (``address.street``, ``visits[].diagnosis``).
A label on a path covers everything below it. Fields with no label are dropped: an unlabelled
field is unknown data, and unknown data is not released (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClassificationSchema", "Projection", "project"]

#: A free-text net: given a string and the readable labels, return (clean text, labels kept).
TextNet = Callable[[str, frozenset[str]], tuple[str, frozenset[str]]]


@dataclass(frozen=True, slots=True)
class ClassificationSchema:
    """Labels by JSON path; list items are addressed with ``[]``."""

    labels: Mapping[str, str]

    def label_of(self, path: str) -> str | None:
        """The label of ``path`` or of its nearest labelled ancestor."""
        probe = path
        while probe:
            if probe in self.labels:
                return self.labels[probe]
            cut = max(probe.rfind("."), probe.rfind("[]"))
            if probe.endswith("[]"):
                probe = probe[:-2]
                continue
            probe = probe[:cut] if cut > 0 else ""
        return None

    def all_labels(self) -> frozenset[str]:
        """Every label the schema uses."""
        return frozenset(self.labels.values())


@dataclass(frozen=True, slots=True)
class Projection:
    """What survived projection, which labels it carries, and which paths were dropped."""

    data: Any
    labels: frozenset[str]
    dropped: tuple[str, ...] = field(default=())


def project(
    data: Any,
    schema: ClassificationSchema,
    readable: frozenset[str],
    *,
    text_net: TextNet | None = None,
) -> Projection:
    """Keep only fields whose label is in ``readable``; run ``text_net`` on kept strings."""
    labels: set[str] = set()
    dropped: list[str] = []

    def walk(node: Any, path: str) -> Any:
        label = schema.label_of(path) if path else None
        if isinstance(node, Mapping | list) and label is not None and label not in readable:
            # A container under an unreadable label goes whole, keys and length included.
            dropped.append(path)
            return _DROP
        if isinstance(node, Mapping):
            out: dict[str, Any] = {}
            for key, child in node.items():
                child_path = f"{path}.{key}" if path else str(key)
                value = walk(child, child_path)
                if value is not _DROP:
                    out[str(key)] = value
            return out
        if isinstance(node, list):
            items = [walk(child, f"{path}[]") for child in node]
            return [i for i in items if i is not _DROP]
        if label is None or label not in readable:
            dropped.append(path)
            return _DROP
        labels.add(label)
        if isinstance(node, str) and text_net is not None:
            clean, found = text_net(node, readable)
            labels.update(found)
            return clean
        return node

    result = walk(data, "")
    if result is _DROP:
        result = None
    return Projection(result, frozenset(labels), tuple(dropped))


class _Drop:
    """Marker for a removed value."""


_DROP = _Drop()
