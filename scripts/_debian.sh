# Sourced by scripts/test: the tools some tests run, from Debian's packages (nothing is
# downloaded by the tests themselves):
#   chromium, chromedriver  headless browser tests (tests/integration/test_browser.py)
#   promtool                the Prometheus alerting rules' checks (tests/deploy/test_alert_rules.py)
_missing=""
command -v chromium >/dev/null 2>&1 || _missing="$_missing chromium"
command -v chromedriver >/dev/null 2>&1 || _missing="$_missing chromium-driver"
_promtool=""
command -v promtool >/dev/null 2>&1 || _promtool="prometheus"
if [ -n "$_missing$_promtool" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing from Debian's packages:$_missing $_promtool ..." >&2
    apt-get update -qq >/dev/null
    if [ -n "$_missing" ]; then
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $_missing >/dev/null
    fi
    if [ -n "$_promtool" ]; then
      # Only its promtool is used; the server is not started.
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
        >/dev/null
    fi
  else
    echo "warning: missing$_missing $_promtool and cannot install them here (not root, or no" \
         "apt-get); the browser or alerting-rule tests will fail" >&2
  fi
fi
unset _missing _promtool
