# Sourced by scripts/*: makes sure Redis and Mosquitto answer on loopback, starting them if not.
_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! _answers 6379; then
  echo "Redis not answering on 127.0.0.1:6379: starting one" >&2
  mkdir -p /tmp/tripline-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/tripline-redis --logfile /tmp/tripline-redis/redis.log
fi
if ! _answers 1883; then
  echo "Mosquitto not answering on 127.0.0.1:1883: starting one" >&2
  mosquitto -d -c "$(dirname "${BASH_SOURCE[0]}")/../conf/mosquitto-dev.conf"
fi
for _ in $(seq 50); do _answers 6379 && _answers 1883 && break; sleep 0.1; done
_answers 6379 || { echo "Redis still not answering on 127.0.0.1:6379" >&2; exit 1; }
_answers 1883 || { echo "Mosquitto still not answering on 127.0.0.1:1883" >&2; exit 1; }
