"""Handing items from a background thread to the control tick without ever blocking it."""

from __future__ import annotations

import queue


def drain[T](items: queue.SimpleQueue[T]) -> list[T]:
    """Everything queued so far, oldest first; an empty list when nothing is."""
    out = []
    while True:
        try:
            out.append(items.get_nowait())
        except queue.Empty:
            return out
