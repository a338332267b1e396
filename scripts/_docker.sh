# Sourced by scripts/test: makes sure a Docker daemon answers for tests/deploy/test_image.py,
# starting Debian's dockerd (scripts/_debian.sh installs it) if not, as scripts/services.sh does
# for Redis and Mosquitto. TRIPLINE_SKIP_IMAGE=1: no Docker here, and those tests are skipped.
if [ "${TRIPLINE_SKIP_IMAGE:-}" != 1 ] && ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null 2>&1; then
    echo "Docker daemon not answering: starting dockerd (log: /tmp/tripline-dockerd/dockerd.log)" >&2
    mkdir -p /tmp/tripline-dockerd
    # Its own session: it outlives this script, as the Redis started by services.sh does.
    setsid dockerd >/tmp/tripline-dockerd/dockerd.log 2>&1 </dev/null &
    for _ in $(seq 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 \
      || echo "dockerd still not answering after 30 s: tests/deploy/test_image.py will fail" >&2
  else
    echo "warning: no Docker daemon answers and none can be started here (not root, or no" \
         "dockerd): tests/deploy/test_image.py will fail (TRIPLINE_SKIP_IMAGE=1 skips it)" >&2
  fi
fi
