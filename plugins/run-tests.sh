#!/usr/bin/env bash
# Install each plugin package in plugins/ into the project venv, the way a user would (pip, entry point),
# then lint, type-check and run its own test suite from its own directory. Called by `make plugins-test`.
# Usage: plugins/run-tests.sh [probe-redis ...]   (default: every plugins/*/pyproject.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
BIN=$VENV/bin

if [ $# -gt 0 ]; then packages=("$@"); else
  packages=(); for p in plugins/*/pyproject.toml; do packages+=("$(basename "$(dirname "$p")")"); done
fi

status=0
for pkg in "${packages[@]}"; do
  dir=plugins/$pkg
  echo "== $pkg"
  stamp=$VENV/.installed-$pkg
  if [ ! -f "$stamp" ] || [ "$dir/pyproject.toml" -nt "$stamp" ]; then  # editable: code changes need no reinstall
    if ! "$BIN/python" -m pip install --quiet -e "$dir[test]" > "$VENV/.pip-$pkg.log" 2>&1; then
      grep -v "^WARNING: Location" "$VENV/.pip-$pkg.log"; echo "!! $pkg: pip install failed"; status=1; continue
    fi
    touch "$stamp"
  fi
  "$BIN/python" -c "from importlib.metadata import distribution as d; import sys; \
g={x.group for x in d('$pkg').entry_points} & {'probe', 'probe.checks', 'probe.actions'}; \
sys.exit(0 if g else '$pkg: no entry point in group probe, probe.checks or probe.actions after install')"
  (cd "$dir" && "../../$BIN/ruff" check . && "../../$BIN/mypy" --config-file pyproject.toml src \
     && "../../$BIN/pytest" -q -p no:cacheprovider) || { echo "!! $pkg failed"; status=1; }
done
exit $status
