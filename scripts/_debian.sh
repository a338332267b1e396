# Sourced by scripts/test: the tools some tests run, from Debian's packages (nothing is
# downloaded by the tests themselves):
#   chromium, chromedriver  headless browser tests (tests/integration/test_browser.py)
#   promtool                the Prometheus alerting rules' checks (tests/deploy/test_alert_rules.py)
#   dockerd, mmdebstrap     the image built and run (tests/deploy/test_image.py; scripts/_docker.sh
#                           starts the daemon); not with TRIPLINE_SKIP_IMAGE=1
_missing=""
command -v chromium >/dev/null 2>&1 || _missing="$_missing chromium"
command -v chromedriver >/dev/null 2>&1 || _missing="$_missing chromium-driver"
_bare=""  # installed without their recommendations
command -v promtool >/dev/null 2>&1 || _bare="$_bare prometheus"
if [ "${TRIPLINE_SKIP_IMAGE:-}" != 1 ]; then
  command -v dockerd >/dev/null 2>&1 || _bare="$_bare docker.io"
  command -v mmdebstrap >/dev/null 2>&1 || _bare="$_bare mmdebstrap"
fi
if [ -n "$_missing$_bare" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing from Debian's packages:$_missing$_bare ..." >&2
    # Waits for another apt run (a shared machine) instead of failing at once on its lock.
    _apt="apt-get -qq -o DPkg::Lock::Timeout=300"
    $_apt update >/dev/null
    if [ -n "$_missing" ]; then
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive $_apt install -y $_missing >/dev/null
    fi
    if [ -n "$_bare" ]; then
      # prometheus: only its promtool is used, the server is not started. docker.io: the
      # engine alone (its recommendations are git, apparmor, xz-utils, ...).
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive $_apt install -y --no-install-recommends $_bare >/dev/null
    fi
    unset _apt
  else
    echo "warning: missing$_missing$_bare and cannot install them here (not root, or no" \
         "apt-get); the browser, alerting-rule or image tests will fail" >&2
  fi
fi
unset _missing _bare
