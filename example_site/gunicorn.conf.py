# ruff: noqa: N999  (gunicorn looks for this exact file name)
"""Production serving of the example site: gunicorn with the gevent worker (flask-sock runs on it).

    FLASK_SECRET_KEY=… FLASK_LPCALL_STORE=redis://127.0.0.1:6379/0 \\
        gunicorn -c example_site/gunicorn.conf.py 'example_site.app:create_app()'

Every worker (and every host) must share the same ``FLASK_SECRET_KEY`` (tokens are
signed with it) and the same Redis (``FLASK_LPCALL_STORE``): a call's two participants
may be connected to different workers. Behind a reverse proxy, forward the WebSocket
upgrade (``/lpcall/ws/``) and set ``FORWARDED_ALLOW_IPS`` to the proxy's address.
"""

from __future__ import annotations

import gc
import os
from typing import Any

# Memory and pauses of a worker holding thousands of sockets (issue 7, benchmarks/RESULTS.md):
# * gevent records, for every greenlet, the stack that spawned it (for debugging tools only):
#   ~8 frame records per greenlet, two or three greenlets per WebSocket. Off unless asked for.
os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
worker_class = "gevent"  # gunicorn monkey-patches the worker, so threads and sockets are greenlets
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# One greenlet per connection: long-lived WebSockets count here, so leave room for thousands.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "4000"))
timeout = 30  # heartbeat of a worker to the master; WebSockets are not limited by it
graceful_timeout = 10  # open sockets are cut after this on restart; clients reconnect and resume
keepalive = 5
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")


#: The cyclic GC's young-generation threshold in a worker (CPython's default is 700). CPython 3.11
#: counts allocations minus deallocations, so a relaying worker, whose every frame frees about what it
#: allocates, reaches 700 only slowly, while each blocked socket read leaves a fresh Waiter, bound
#: methods and tuples in the young generation: with 2,000 sockets each young collection walked ~10,000
#: live objects and promoted them, and the promoted ones brought a full collection (30-190 ms, every
#: greenlet paused) every few seconds. At 7,000 the steady state has no full collection at all, and
#: the worker spends ~7 % less CPU per frame (benchmarks/RESULTS.md, issue 20). The other two
#: thresholds stay CPython's, so closed connections' garbage is still collected as the heap grows.
GC_YOUNG_THRESHOLD = 7000


def post_worker_init(worker: Any) -> None:
    """The app is loaded: move everything allocated so far (modules, the app, its caches) out of
    the cyclic garbage collector's reach. A full collection then walks only what the connections
    allocate, instead of pausing every greenlet of the worker for the whole start-up heap too.
    Young collections run less often (:data:`GC_YOUNG_THRESHOLD`)."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
