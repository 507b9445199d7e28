"""``pyresque-work --app <this file>``: release node-resque's QueueLock keys (see
pyresqueworker.contrib.node_resque), beside the test jobs of tests/apps/worker_jobs.py."""

from pyresqueworker import middleware
from pyresqueworker.contrib.node_resque import release_queue_locks

middleware(release_queue_locks())
