"""Send to users of the demo from outside the server: a script, cron job or task queue worker.

The web workers share a Redis (``WSREGISTRY_REDIS_URL``); this process holds no
socket and runs no registry. It publishes through
:class:`~wsregistry.backends.redis.SyncRedisEmitter` on the same channels, and
every worker delivers to its own connections of the user. The messages use the
demo's protocol, so they show up in the page.

Run the demo on Redis, sign in as alice, then::

    export WSREGISTRY_REDIS_URL=redis://127.0.0.1:6379/0
    python examples/notify_from_worker.py alice "Your export is ready"
    python examples/notify_from_worker.py --everyone "Maintenance at 18:00"

Exit status: 0 when sent, 1 when the user is offline (nothing sent), 2 when
Redis cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from wsregistry.backends.redis import SyncRedisEmitter
from wsregistry.errors import BackendUnavailable, NotConnected

SENDER = "worker"


def notify(emitter: SyncRedisEmitter, user: str, text: str) -> int:
    """A direct message from ``worker`` to every tab of ``user``; raises if they are offline."""
    message = {"type": "dm", "from": SENDER, "to": user, "text": text, "ts": time.time()}
    return emitter.send(user, message, require=True)


def announce(emitter: SyncRedisEmitter, text: str) -> int:
    """An announcement to every connection on every worker."""
    message = {"type": "announcement", "from": SENDER, "text": text, "ts": time.time()}
    return emitter.broadcast(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("user", nargs="?", help="the user to notify")
    target.add_argument("--everyone", action="store_true", help="announce to everyone")
    parser.add_argument("text", help="the message")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("WSREGISTRY_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="default: $WSREGISTRY_REDIS_URL",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("WSREGISTRY_REDIS_NAMESPACE") or "wsregistry",
        help="default: $WSREGISTRY_REDIS_NAMESPACE or 'wsregistry'",
    )
    args = parser.parse_args(argv)
    with SyncRedisEmitter(args.redis_url, namespace=args.namespace) as emitter:
        try:
            if args.everyone:
                nodes = announce(emitter, args.text)
                print(f"announced to everyone ({nodes} worker(s) listening)")
            else:
                nodes = notify(emitter, args.user, args.text)
                print(f"sent to {args.user} ({nodes} worker(s) hold their connections)")
        except NotConnected:
            print(f"{args.user} is offline: nothing sent", file=sys.stderr)
            return 1
        except BackendUnavailable as exc:
            print(f"Redis is unreachable: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
