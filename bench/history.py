"""Compatibility alias: the history format and writer live in ``backends.history`` (below both
layers, so that backends never import ``bench``). New code imports from there."""

from backends.history import (  # noqa: F401
    FAIL,
    INFO,
    INVOKE,
    OK,
    History,
    HistoryTail,
    HistoryWriter,
    read_history,
)
