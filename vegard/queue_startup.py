"""Startup module of bluesky-queueserver's RE Manager (`start-re-manager --startup-module
vegard.queue_startup`): the worker's namespace, configured by `$VEGARD_QUEUE_CONFIG`.

`vegard serve` starts the RE Manager with it; the names below are what the queue server
sees: `RE`, the profile's devices and the plans (`vegard.queue_environment`).
"""

from vegard.queue_environment import config_from_environment, queue_namespace

globals().update(queue_namespace(config_from_environment()))
