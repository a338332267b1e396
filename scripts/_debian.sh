# Sourced by scripts/test: the tools some tests run, from Debian's packages (nothing is
# downloaded by the tests themselves):
#   chromium, chromedriver  headless browser tests (tests/integration/test_browser.py)
#   promtool                the Prometheus alerting rules' checks (tests/deploy/test_alert_rules.py)
# shellcheck source=scripts/_apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"
_missing=""
command -v chromium >/dev/null 2>&1 || _missing="$_missing chromium"
command -v chromedriver >/dev/null 2>&1 || _missing="$_missing chromium-driver"
if [ -n "$_missing" ]; then
  # shellcheck disable=SC2086
  _apt_install "the browser tests" $_missing ||
    echo "warning: missing$_missing; the browser tests will fail" >&2
fi
if ! command -v promtool >/dev/null 2>&1; then
  # Only its promtool is used; the server is not started.
  _apt_install "promtool, for the alerting-rule tests" --no-install-recommends prometheus ||
    echo "warning: missing promtool (Debian's prometheus); the alerting-rule tests will fail" >&2
fi
unset _missing
