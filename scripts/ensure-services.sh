#!/usr/bin/env bash
# Start what the test suite needs when it is missing: a Redis on 127.0.0.1:6379 and a NATS
# with JetStream on 127.0.0.1:4222.
set -euo pipefail

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis-server is missing: installing Debian's redis-server" >&2
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    fi
    echo "starting redis-server on 127.0.0.1:6379" >&2
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 50); do
        redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
    if [ ! -x /usr/sbin/nats-server ]; then
        echo "nats-server is missing: installing Debian's nats-server" >&2
        apt-get update -qq && apt-get install -y -qq nats-server >/dev/null
    fi
    echo "starting nats-server (JetStream) on 127.0.0.1:4222" >&2
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break
        sleep 0.1
    done
    (exec 3<>/dev/tcp/127.0.0.1/4222)
fi

# The real-browser test (pytest -m browser) drives Debian's Chromium through Playwright;
# Playwright never downloads a browser of its own here.
if [ ! -x /usr/bin/chromium ]; then
    echo "chromium is missing: installing Debian's chromium" >&2
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
