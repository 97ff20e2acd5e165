"""Cluster managers: how workers are started and stopped."""

from .base import ClusterManager, WorkerConfig
from .local import LocalManager
from .ssh import SSHManager

__all__ = ["ClusterManager", "LocalManager", "SSHManager", "WorkerConfig"]
