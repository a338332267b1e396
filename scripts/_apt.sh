# Sourced by scripts/*: `_apt_install WHY PACKAGE...` installs Debian/Ubuntu packages, as root
# or through sudo. Where it cannot (no apt-get; not root and no sudo; sudo wanting a password
# with no terminal to ask on; apt-get failing) it returns 1, having said why for the last three,
# so the caller can say what to do instead.
_apt_install() {
  local why=$1
  shift
  command -v apt-get >/dev/null 2>&1 || return 1
  local run=()
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "cannot install $* ($why): not root, and sudo is not installed." >&2
      echo "  As root: apt-get install -y $*" >&2
      return 1
    fi
    if [ -t 0 ]; then
      run=(sudo)
    elif sudo -n true 2>/dev/null; then
      run=(sudo -n)
    else
      echo "cannot install $* ($why): sudo wants a password and there is no terminal to ask" \
           "for it on." >&2
      echo "  Run: sudo apt-get install -y $*" >&2
      return 1
    fi
  fi
  echo "installing $* ($why) from the OS packages${run[*]:+ with sudo} ..." >&2
  # DEBIAN_FRONTEND goes through env: sudo resets the environment. ${run[@]+...}: an empty
  # array is "unbound" to set -u in older bash.
  # apt-get's output is shown only when it fails (its notes, such as debconf's, are noise).
  local out
  out=$(mktemp)
  if ! ${run[@]+"${run[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$out" 2>&1 ||
     ! ${run[@]+"${run[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" \
       >>"$out" 2>&1; then
    cat "$out" >&2
    rm -f "$out"
    echo "could not install $* (apt-get's messages are above)." >&2
    echo "  By hand: sudo apt-get install -y $*" >&2
    return 1
  fi
  rm -f "$out"
}
