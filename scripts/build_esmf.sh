#!/usr/bin/env bash
# Build ESMF (the library and ESMF_RegridWeightGen) and its Python binding ESMPy from a source
# archive, without conda, and install ESMPy and xESMF into the project's .venv.
#
#   bash scripts/build_esmf.sh [ARCHIVE]
#
# ARCHIVE defaults to ../shared/vendor/esmf-8.8.1-src.tar.xz (the tag v8.8.1 tree of
# esmf-org/esmf, packed without a top folder; a tarball with one top folder works too).
# ESMF is on neither PyPI nor Debian. The library is built once per machine into
# ${ATMOREP_ESMF_CACHE:-~/.cache/atmorep_coupler-esmf}/<archive hash>/ (about 8 min on 2 cores;
# mpiuni, no PIO/MOAB, Debian's netCDF); later runs only (re)install ESMPy into .venv (seconds).
# Afterwards `.venv/lib/esmf.mk` points at the build, so `import esmpy` needs no ESMFMKFILE, and
# the tests find ESMF_RegridWeightGen through it. Needs gfortran, g++, make and netCDF's C and
# Fortran development files; as root with apt-get they are installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
archive=$(realpath "${1:-../shared/vendor/esmf-8.8.1-src.tar.xz}")
[ -f "$archive" ] || { echo "[esmf] no source archive at $archive" >&2; exit 1; }
cache=${ATMOREP_ESMF_CACHE:-$HOME/.cache/atmorep_coupler-esmf}
key=$(sha256sum "$archive" | cut -c1-16)
prefix=$cache/$key
esmfmk=$prefix/lib/libO/Linux.gfortran.64.mpiuni.default/esmf.mk

need=()
for tool in gfortran g++ make nc-config nf-config; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[esmf] installing the toolchain (missing: ${need[*]})"
    packages=(gfortran g++ make libnetcdf-dev libnetcdff-dev)
    apt-get install -y -q "${packages[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q "${packages[@]}" >/dev/null; }
  else
    echo "[esmf] missing ${need[*]}: install gfortran, g++, make, libnetcdf-dev, libnetcdff-dev" >&2
    exit 1
  fi
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one build per machine, even when several checkouts ask at once
if [ ! -f "$prefix/.built" ]; then
  echo "[esmf] building ESMF from $(basename "$archive") into $prefix (about 8 min on 2 cores)"
  start=$(date +%s)
  work=$(mktemp -d "$cache/src.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  src=$work
  tar -xJf "$archive" -C "$src"
  # a tarball with one top folder (as GitHub makes them) or the tree itself
  [ -f "$src/makefile" ] || src=$(dirname "$(ls "$src"/*/makefile)")
  rm -rf "$prefix"
  (
    export ESMF_DIR=$src ESMF_COMM=mpiuni ESMF_COMPILER=gfortran ESMF_BOPT=O \
      ESMF_NETCDF=nc-config ESMF_PIO=OFF ESMF_MOAB=OFF ESMF_INSTALL_PREFIX=$prefix
    cd "$src"
    make -j"${ESMF_BUILD_JOBS:-$(nproc)}" lib > "$cache/build-$key.log" 2>&1 \
      || { tail -30 "$cache/build-$key.log" >&2; exit 1; }
    make install >> "$cache/build-$key.log" 2>&1 \
      || { tail -30 "$cache/build-$key.log" >&2; exit 1; }
  )
  cp -r "$src/src/addon/esmpy" "$prefix/esmpy-src"
  rm -rf "$work"
  [ -f "$esmfmk" ] || { echo "[esmf] the build left no $esmfmk" >&2; exit 1; }
  touch "$prefix/.built"
  echo "[esmf] ESMF built in $(( $(date +%s) - start )) s"
fi
flock -u 9

[ -x .venv/bin/python ] || bash scripts/setup_env.sh
ln -sf "$esmfmk" .venv/lib/esmf.mk
if ! .venv/bin/python -c "import esmpy, xesmf" >/dev/null 2>&1; then
  echo "[esmf] installing ESMPy and xESMF into .venv"
  tmp=$(mktemp -d)
  cp -r "$prefix/esmpy-src" "$tmp/esmpy"
  # what .venv holds stays as it is (torch above all): new packages only, or a failure
  .venv/bin/python -m pip list --format=freeze --exclude-editable | grep -v -i -E '^(esmpy|xesmf)[=@ ]' > "$tmp/constraints.txt"
  ESMFMKFILE=$esmfmk .venv/bin/python -m pip install -q -c "$tmp/constraints.txt" "$tmp/esmpy"
  .venv/bin/python -m pip install -q -c "$tmp/constraints.txt" -e "$repo[esmf]"
  rm -rf "$tmp"
fi
.venv/bin/python -c "import esmpy; print('[esmf] esmpy', esmpy.__version__, 'with', '$esmfmk')"
