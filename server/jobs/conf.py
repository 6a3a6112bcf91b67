"""Job engine settings: a Django setting when set, else the environment (validated)."""

from __future__ import annotations

from server.config import ConfigError, setting_int


def heartbeat_interval_s() -> int:
    """How often a running task's heartbeat thread touches ``Job.heartbeat_at``."""
    return setting_int("LVIT_JOB_HEARTBEAT_S", 10, 1)


def stale_after_s() -> int:
    """A running job whose heartbeat is older than this is considered dead (its worker was lost)."""
    value = setting_int("LVIT_JOB_STALE_AFTER_S", 120, 2)
    if value <= heartbeat_interval_s():
        raise ConfigError("LVIT_JOB_STALE_AFTER_S must be larger than LVIT_JOB_HEARTBEAT_S")
    return value


def pending_timeout_s() -> int:
    """A pending job that no worker took for this long is failed by the reaper (its task was lost)."""
    return setting_int("LVIT_JOB_PENDING_TIMEOUT_S", 6 * 3600, 10)
