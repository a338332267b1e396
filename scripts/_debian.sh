# Sourced by scripts/test: the tools some tests run, from Debian's packages (nothing is
# downloaded by the tests themselves):
#   chromium, chromedriver  headless browser tests (tests/integration/test_browser.py)
#   promtool                the Prometheus alerting rules' checks (tests/deploy/test_alert_rules.py)
#   dockerd, mmdebstrap     the image built and run (tests/deploy/test_image.py; scripts/_docker.sh
#                           starts the daemon); not with TRIPLINE_SKIP_IMAGE=1
#   openssl                 the MQTT TLS test's certificates (tests/integration/test_mqtt_tls.py);
#                           ca-certificates brings it; without it Debian has the library only
# shellcheck source=scripts/_apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"
_missing=""
command -v chromium >/dev/null 2>&1 || _missing="$_missing chromium"
command -v chromedriver >/dev/null 2>&1 || _missing="$_missing chromium-driver"
command -v openssl >/dev/null 2>&1 || _missing="$_missing openssl"
if [ -n "$_missing" ]; then
  # shellcheck disable=SC2086
  _apt_install "tools the tests run" $_missing ||
    echo "warning: missing$_missing; the browser or TLS tests will fail" >&2
fi
if ! command -v promtool >/dev/null 2>&1; then
  # Only its promtool is used; the server is not started.
  _apt_install "promtool, for the alerting-rule tests" --no-install-recommends prometheus ||
    echo "warning: missing promtool (Debian's prometheus); the alerting-rule tests will fail" >&2
fi
_missing=""
if [ "${TRIPLINE_SKIP_IMAGE:-}" != 1 ]; then
  command -v dockerd >/dev/null 2>&1 || _missing="$_missing docker.io"
  command -v mmdebstrap >/dev/null 2>&1 || _missing="$_missing mmdebstrap"
fi
if [ -n "$_missing" ]; then
  # docker.io: the engine alone (its recommendations are git, apparmor, xz-utils, ...).
  # shellcheck disable=SC2086
  _apt_install "the image's build and run tests" --no-install-recommends $_missing ||
    echo "warning: missing$_missing; the image tests will fail (TRIPLINE_SKIP_IMAGE=1 skips them)" >&2
fi
unset _missing
