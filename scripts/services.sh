# Sourced by scripts/*: makes sure Redis and Mosquitto answer on loopback. Missing ones are
# installed from the OS packages on Debian/Ubuntu (as root, or with sudo), then started here if
# the package did not start them (no systemd: a container, a chroot). Elsewhere it says what to
# install and stops.
# shellcheck source=scripts/_apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"
_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Debian installs mosquitto in /usr/sbin, which is not on a user's PATH there (nor Homebrew's
# sbin on every Mac's).
_mosquitto() {
  command -v mosquitto && return 0
  local dir
  for dir in /usr/sbin /usr/local/sbin /opt/homebrew/sbin; do
    [ -x "$dir/mosquitto" ] && { echo "$dir/mosquitto"; return 0; }
  done
  return 1
}
_need=""
_answers 6379 || command -v redis-server >/dev/null 2>&1 || _need="$_need redis-server"
_answers 1883 || _mosquitto >/dev/null || _need="$_need mosquitto"
if [ -n "$_need" ]; then
  # shellcheck disable=SC2086
  if ! _apt_install "Redis and Mosquitto, which tripline needs on loopback" $_need; then
    cat >&2 <<EOF

tripline needs Redis on 127.0.0.1:6379 and Mosquitto on 127.0.0.1:1883; not installed here:$_need.
  Debian/Ubuntu:  sudo apt-get install -y$_need
  macOS:          brew install redis mosquitto
  other Linux:    your distribution's redis and mosquitto packages
then run this again: it starts them on loopback. Or, with Docker, run the service itself with
its broker, Redis and the contact-center emulator: cd deploy && docker compose up --build
(dashboard: http://127.0.0.1:8080/?token=change-me-read).
EOF
    exit 1
  fi
  # The packages start them where systemd runs: a moment to open their ports.
  for _ in $(seq 30); do _answers 6379 && _answers 1883 && break; sleep 0.1; done
fi
if ! _answers 6379; then
  echo "Redis not answering on 127.0.0.1:6379: starting one" >&2
  # Per user: a directory another user made in /tmp is not writable here.
  _dir="${TMPDIR:-/tmp}/tripline-redis-$(id -u)"
  mkdir -p "$_dir"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$_dir" --logfile "$_dir/redis.log"
fi
if ! _answers 1883; then
  echo "Mosquitto not answering on 127.0.0.1:1883: starting one" >&2
  "$(_mosquitto)" -d -c "$(dirname "${BASH_SOURCE[0]}")/../conf/mosquitto-dev.conf"
fi
for _ in $(seq 50); do _answers 6379 && _answers 1883 && break; sleep 0.1; done
_answers 6379 || { echo "Redis still not answering on 127.0.0.1:6379" >&2; exit 1; }
_answers 1883 || { echo "Mosquitto still not answering on 127.0.0.1:1883" >&2; exit 1; }
unset _need _dir
