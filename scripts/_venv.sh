# Sourced by scripts/serve and scripts/test: create .venv with Python >= 3.11 if missing, install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
pick_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3 python; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 or newer is required" >&2; return 1
}
ensure_venv() {  # $1: extras spec, e.g. ".[dev]" or "."
  # The runtime dependencies come from requirements.lock (exact versions, sha256-checked), the
  # same set the Docker image installs; the dev extras (tests, linter) are not locked.
  local spec="$1" stamp=".venv/.installed-$(echo "$1" | tr -c 'a-z' '_')"
  local pip=(.venv/bin/python -m pip --disable-pip-version-check)
  if [ ! -x .venv/bin/python ]; then
    "$(pick_python)" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
    "${pip[@]}" install --quiet --upgrade pip
    if ! "${pip[@]}" install --quiet --require-hashes -r requirements.lock; then
      # e.g. a Python too new for a locked wheel: fall back to what pyproject.toml allows
      echo "warning: requirements.lock does not install here; using the newest versions pyproject.toml allows" >&2
    fi
    "${pip[@]}" install --quiet -e "$spec"
    touch "$stamp"
  fi
}
