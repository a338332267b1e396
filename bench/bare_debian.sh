#!/usr/bin/env bash
# The README's commands on a bare Debian 12 (#22): a clone of this repository's HEAD in a
# minbase root (python3, python3-venv, git, ca-certificates, sudo: no Redis, no Mosquitto), run
# by chroot in network and mount namespaces of its own, so that the host's services on
# 127.0.0.1 are not there. The root reaches Debian's archive and PyPI through socat: a listener
# on the root's loopback per host, a Unix socket in the root's /run/bridge, a host-side socat to
# the real host (TLS passes through untouched).
#
#   bench/bare_debian.sh WHO [COMMAND]      as root, on a Debian host with mmdebstrap and socat
#     WHO      root | sudo (a user with password-less sudo) | user (no sudo rights)
#     COMMAND  run in the clone (default: ./scripts/demo --exit)
#   PREP='rm $ROOT/usr/bin/sudo'  changes the root first (no apt-get: a system not Debian's)
#
# The root is made once (mmdebstrap, ~2 min) and kept as $BARE_DIR/root.tar; each run unpacks a
# fresh copy into $BARE_DIR/run-WHO (kept afterwards to look at) and ends what it started there.
set -euo pipefail
hosts=(deb.debian.org:80 pypi.org:443 files.pythonhosted.org:443)

if [ "${1:-}" = --inside ]; then  # the namespaces' side: loopback, the bridge, mounts, the run
  shift
  root=$1
  shift
  trap 'kill $(jobs -p) 2>/dev/null' EXIT
  ip link set lo up
  n=2
  for hp in "${hosts[@]}"; do
    socat "TCP-LISTEN:${hp#*:},bind=127.0.0.$n,fork,reuseaddr" \
      "UNIX-CONNECT:$root/run/bridge/${hp%:*}.sock" &
    n=$((n + 1))
  done
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount --rbind /sys "$root/sys"
  sleep 0.3
  chroot "$root" "$@"  # not exec: the trap ends the listeners
  exit
fi

who=${1:?usage: bench/bare_debian.sh root|sudo|user [COMMAND]}
cmd=${2:-./scripts/demo --exit}
src=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
dir=${BARE_DIR:-/var/tmp/tripline-bare}
mkdir -p "$dir"
if [ ! -f "$dir/root.tar" ]; then
  rm -rf "$dir/build"
  # The archive the bridge reaches: the root's apt uses it too.
  mmdebstrap --variant=minbase --include=python3,python3-venv,git,ca-certificates,sudo \
    bookworm "$dir/build" http://deb.debian.org/debian
  tar -C "$dir/build" -cf "$dir/root.tar" .
  rm -rf "$dir/build"
fi
root=$dir/run-$who
rm -rf "$root"
mkdir -p "$root"
tar -C "$root" -xf "$dir/root.tar"
# The host's own certificate authorities too (a proxy that re-signs TLS, as on these machines).
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null ||
  true
chroot "$root" update-ca-certificates >/dev/null 2>&1
mkdir -p "$root/run/bridge"
echo "127.0.0.1 localhost" >"$root/etc/hosts"
bridges=()
n=2
for hp in "${hosts[@]}"; do
  socat "UNIX-LISTEN:$root/run/bridge/${hp%:*}.sock,fork,unlink-early" "TCP:$hp" &
  bridges+=($!)
  echo "127.0.0.$n ${hp%:*}" >>"$root/etc/hosts"
  n=$((n + 1))
done
cleanup() {  # what the run left in the root (its Redis, its Mosquitto), then the bridge
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill "${p#/proc/}" 2>/dev/null
  done
  kill "${bridges[@]}" 2>/dev/null || true
}
trap cleanup EXIT
path=/usr/local/bin:/usr/bin:/bin
case $who in
  root)
    mkdir -p "$root/home/dev"
    git clone -q "$src" "$root/home/dev/tripline"
    as=(env -i HOME=/root "PATH=/usr/local/sbin:/usr/sbin:/sbin:$path" LANG=C.UTF-8)
    ;;
  sudo | user)
    chroot "$root" useradd -m -s /bin/bash dev
    if [ "$who" = sudo ]; then
      echo "dev ALL=(ALL) NOPASSWD: ALL" >"$root/etc/sudoers.d/dev"
      chmod 440 "$root/etc/sudoers.d/dev"
    fi
    git clone -q "$src" "$root/home/dev/tripline"
    chroot "$root" chown -R dev:dev /home/dev
    as=(runuser -u dev -- env -i HOME=/home/dev USER=dev "PATH=$path" LANG=C.UTF-8)
    ;;
  *)
    echo "WHO: root, sudo or user" >&2
    exit 2
    ;;
esac
if [ -n "${PREP:-}" ]; then ROOT=$root bash -c "$PREP"; fi
unshare -n -m --propagation private "$0" --inside "$root" "${as[@]}" \
  bash -c "cd /home/dev/tripline && $cmd"
