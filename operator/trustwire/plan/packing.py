"""Trust files into Secrets: one Secret while they fit, beyond that a Secret of its own per large file.

Kubernetes refuses a Secret whose data exceeds 1 MiB, but a projected volume shows the
files of several Secrets in one directory, so a hub's trust material may span Secrets and
its pods still see the same files. :func:`pack` keeps everything in the trust Secret while
it fits; otherwise it moves the largest of :data:`~trustwire.names.TRUST_SPLIT_KEYS` into
Secrets of their own (named by the file) until the rest fits. A file already in a Secret of
its own stays there while any split is needed, so a peer joining rewrites only the Secrets
whose files changed and never reshuffles the layout (nor rolls the hub's pods for it).
A single file cannot span Secrets: :func:`fill` is how close the largest constraint is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping

from trustwire import names

#: Kubernetes refuses a Secret whose data values add up to more than 1 MiB (``MaxSecretSize``).
SECRET_DATA_LIMIT = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Packing:
    """Which trust files stay in the trust Secret and which each go into a Secret of their own."""

    shared: dict[str, bytes]
    #: file → its bytes, each file alone in ``names.trust_file_secret(identity, file)``
    alone: dict[str, bytes]


def pack(data: Mapping[str, bytes], budget: int = SECRET_DATA_LIMIT,
         alone_before: Collection[str] = ()) -> Packing | None:
    """The layout of ``data`` in Secrets of at most ``budget`` bytes each, or None when it cannot fit."""
    if _size(data.values()) <= budget:
        return Packing(dict(data), {})
    alone = [f for f in names.TRUST_SPLIT_KEYS if f in alone_before and f in data]
    rest = _size(v for f, v in data.items() if f not in alone)
    for file in sorted((f for f in names.TRUST_SPLIT_KEYS if f in data and f not in alone),
                       key=lambda f: (-len(data[f]), f)):
        if rest <= budget:
            break
        alone.append(file)
        rest -= len(data[file])
    if rest > budget or any(len(data[f]) > budget for f in alone):
        return None
    return Packing({f: v for f, v in data.items() if f not in alone},
                   {f: data[f] for f in names.TRUST_SPLIT_KEYS if f in alone})


def fill(data: Mapping[str, bytes], budget: int = SECRET_DATA_LIMIT) -> float:
    """How full the layout of ``data`` is, ≤ 1 exactly when :func:`pack` fits it: one Secret
    holds it all, or every split file and the rest each fit one. Grows with every peer added."""
    fixed = _size(v for f, v in data.items() if f not in names.TRUST_SPLIT_KEYS)
    split = max([fixed, *(len(data[f]) for f in names.TRUST_SPLIT_KEYS if f in data)])
    return min(_size(data.values()), split) / budget


def largest(data: Mapping[str, bytes]) -> tuple[str, int]:
    """The largest file (what a split can never make smaller) and its size."""
    name = max(sorted(data), key=lambda f: len(data[f]), default="")
    return name, len(data.get(name, b""))


def _size(values: Iterable[bytes]) -> int:
    return sum(len(v) for v in values)
