# Sourced by scripts/*: creates .venv from pyproject.toml when missing or out of date, activates it.
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setting up .venv (first run or pyproject.toml changed) ..." >&2
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# shellcheck disable=SC1091
. .venv/bin/activate
