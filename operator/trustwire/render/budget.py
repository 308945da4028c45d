"""The per-render bounds shared by every sandbox hook: size, work and time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sized
from typing import Any, NoReturn

from trustwire.render.errors import BoundExceeded

MAX_OUTPUT_BYTES = 256 * 1024
MAX_SOURCE_BYTES = 64 * 1024
#: Everything emitted by output statements anywhere (including macro bodies and
#: captured blocks) may be at most this many times the output cap.
WORK_FACTOR = 8


class Budget:
    def __init__(self, max_bytes: int, time_budget: float, clock: Callable[[], float]) -> None:
        self.max_bytes = max_bytes
        self.time_budget = time_budget
        self.clock = clock
        self.deadline = clock() + time_budget
        self.work_limit = WORK_FACTOR * max_bytes
        self.work = 0
        self.line: int | None = None  # the line of the latest loop step or output

    def tick(self) -> None:
        if self.clock() > self.deadline:
            raise BoundExceeded(f"time budget of {self.time_budget:g}s exceeded")

    def too_big(self, what: str, size: int) -> NoReturn:
        raise BoundExceeded(
            f"{what} would be {size} bytes or more, above the output size limit of {self.max_bytes} bytes"
        )

    def check_size(self, what: str, size: int) -> None:
        if size > self.max_bytes:
            self.too_big(what, size)

    def check_flat(self, what: str, value: Any) -> None:
        """Refuse turning ``value`` into text if its flattened size exceeds the output cap."""
        size = self.deep_size(value, self.max_bytes)
        if size > self.max_bytes:
            self.too_big(what, size)

    def check_result(self, what: str, value: Any) -> Any:
        """Backstop for results of calls, operators and filters; returns ``value``.

        Text is bounded by the output cap. Containers are bounded by the (larger) work
        limit, counting shared references each time: sorting or filtering a large
        context list is fine, a list of 100000 references to one big string is not.
        """
        if isinstance(value, str | bytes | bytearray):
            self.check_size(what, len(value))
            return value
        size = self.deep_size(value, self.work_limit)
        if size > self.work_limit:
            self.over_work_limit(what, size)
        return value

    def over_work_limit(self, what: str, size: int) -> NoReturn:
        raise BoundExceeded(
            f"{what} would hold {size} items or characters or more, above the work limit of "
            f"{self.work_limit} ({WORK_FACTOR} x the output size limit of {self.max_bytes} bytes)"
        )

    def deep_size(self, value: Any, limit: int) -> int:
        """Approximate flattened size: string lengths plus one per container item.

        Shared references count each time they occur (that is what flattening them
        would cost). Stops as soon as the total passes ``limit``.
        """
        total = 0
        stack = [value]
        steps = 0
        while stack:
            item = stack.pop()
            steps += 1
            if steps % 4096 == 0:
                self.tick()
            if isinstance(item, str | bytes | bytearray):
                total += len(item)
            elif isinstance(item, bool) or item is None:
                total += 1
            elif isinstance(item, int):
                total += max(1, item.bit_length() // 8)
            elif isinstance(item, list | tuple | set | frozenset):
                total += 1
                stack.extend(item)
            elif isinstance(item, dict):
                total += 1
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                total += 1
            if total > limit:
                return total
        return total

    def materialize(self, what: str, value: Any) -> Any:
        """Turn a lazy iterable (generator, ``map``) into a list, bounded by the work limit."""
        if isinstance(value, Sized) or not isinstance(value, Iterable):
            return value
        items: list[Any] = []
        size = 0
        for item in value:
            self.tick()
            size += self.deep_size(item, self.work_limit) + 1
            if size > self.work_limit:
                self.over_work_limit(what, size)
            items.append(item)
        return items
