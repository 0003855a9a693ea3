"""Waking a process's ban sync when its store announces a change (Redis pub/sub).

The sync polls the store's version every ``ALLOW_BAN_SYNC_INTERVAL`` seconds: that stays the
guarantee (a message lost while reconnecting, a store that announces nothing). With a store
that announces changes, a thread of each process (started again after a fork) waits on the
channel and wakes the sync at once, so a ban made on another instance is in force here within
milliseconds. It never logs an outage itself (the sync does, once), and it subscribes again,
with a growing pause, after the connection broke.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from ..live import BackgroundTask
from .stores import BanStore, StoreError

#: Seconds one wait on the channel lasts (how long a stopped listener may take to end).
WAIT = 2.0
#: Seconds after a wake before the next: a burst of bans (auto-bans of a scan) makes few syncs.
GAP = 0.1
#: The longest pause between two tries to subscribe again.
MAX_PAUSE = 5.0


class ChangeListener:
    """Calls ``wake()`` for every change ``store`` announces (``BanStore.subscribe``)."""

    def __init__(self, store: BanStore, wake: Callable[[], None], logger: logging.Logger) -> None:
        self.store = store
        self.wake = wake
        self._channel: Any = None
        self._pid = 0
        self._failures = 0
        self.task = BackgroundTask("ban changes", WAIT, self._listen, logger, delay=0.0)

    @staticmethod
    def wanted(store: BanStore) -> bool:
        """Whether ``store`` announces its changes."""
        return type(store).subscribe is not BanStore.subscribe

    def start(self) -> None:
        self.task.start()

    def stop(self) -> None:
        self.task.stop()
        self._drop()

    def _listen(self) -> float:
        channel = self._channel
        if channel is None or self._pid != os.getpid():  # none yet, or the parent's: not ours to read
            try:
                channel = self.store.subscribe()
            except StoreError:
                self._failures += 1
                return min(MAX_PAUSE, 0.25 * 2**self._failures)
            self._channel, self._pid, self._failures = channel, os.getpid(), 0
            self.wake()  # a change may have come while not subscribed
        try:
            message = channel.get_message(timeout=WAIT)
            if message is None:
                return 0.0
            while channel.get_message(timeout=0) is not None:  # a burst of changes: one sync
                pass
        except Exception:  # the connection broke: subscribe again (the sync says the store is down)
            self._drop()
            return 0.25
        self.wake()
        return GAP  # what comes meanwhile waits in the socket: at most one sync per GAP from here

    def _drop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                channel.close()
