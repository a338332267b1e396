# Sourced by scripts/test: headless Chromium and its driver for the browser tests (Debian's
# packages; nothing is downloaded by the tests themselves).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver for the browser tests ..." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "warning: chromium/chromedriver missing and cannot be installed here;" \
         "tests/integration/test_browser.py will fail (apt-get install chromium chromium-driver)" >&2
  fi
fi
