#!/usr/bin/env bash
# Builds the real Asterisk the interop tests (tests/asterisk, tests/common/asterisk.rs) talk to:
# Asterisk 22.10.1 from ../shared/peers (Debian has no Asterisk package), with app_voicemail built
# for ODBC_STORAGE and only the modules those tests load, installed into
# CACHE_ROOT/asterisk-<key>. The key covers the tarball's checksum and this script's own text, so
# any change to the flags or the module list below builds a new prefix; an existing complete
# prefix (its marker file is written last) is reused as is. Also installs the Debian packages the
# build and the tests need (unixODBC drivers for PostgreSQL and MariaDB, the English prompts),
# only when missing. Prints the prefix as the last line of stdout.
#
#   usage: tests/asterisk/build.sh CACHE_ROOT
#   env:   ASTERISK_TARBALL  the source tarball (default: ../shared/peers/asterisk-22.10.1.tar.xz
#                            beside the clone)
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 CACHE_ROOT" >&2
  exit 2
fi
CACHE_ROOT=$1
SELF=$(readlink -f "$0")
REPO=$(cd "$(dirname "$SELF")/../.." && pwd)
TARBALL=${ASTERISK_TARBALL:-$REPO/../shared/peers/asterisk-22.10.1.tar.xz}
if [ ! -f "$TARBALL" ]; then
  echo "build.sh: no Asterisk source tarball at $TARBALL (set ASTERISK_TARBALL)" >&2
  exit 1
fi

# --- Debian packages, installed only when missing -------------------------------------------
BUILD_PKGS="build-essential pkg-config libedit-dev libjansson-dev libxml2-dev uuid-dev
  libsqlite3-dev libssl-dev unixodbc-dev"
# unixodbc: odbcinst and libodbc; odbc-postgresql: psqlODBC ("PostgreSQL Unicode");
# odbc-mariadb: MariaDB Connector/ODBC; asterisk-core-sounds-en-wav: the prompts VoiceMail() plays.
RUN_PKGS="unixodbc odbc-postgresql odbc-mariadb asterisk-core-sounds-en-wav"
missing=()
for p in $BUILD_PKGS $RUN_PKGS; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the cached prefix -------------------------------------------------------------------------
key=$( { sha256sum "$TARBALL" | cut -d' ' -f1; cat "$SELF"; } | sha256sum | cut -c1-16)
PREFIX="$(mkdir -p "$CACHE_ROOT" && cd "$CACHE_ROOT" && pwd)/asterisk-$key"
MARKER="$PREFIX/.voxmail-build-complete"

# One build at a time per cache root (two CI runs on one machine).
exec 9>"$CACHE_ROOT/.asterisk-build.lock"
flock 9

if [ -f "$MARKER" ]; then
  echo "build.sh: cached $PREFIX" >&2
  echo "$PREFIX"
  exit 0
fi

# ODBC voicemail and what its tests drive: the Local channel and pbx_builtins are in the core;
# app_voicemail_odbc will not load without res_adsi and res_smdi; res_config_odbc serves realtime
# mailboxes (func_realtime/res_realtime read and show their rows); res_clioriginate gives
# `channel originate`; the formats and codecs cover format=wav49|gsm|wav and µ-law/A-law;
# app_system/func_shell let a dialplan signal the test; app_stack (needs res_agi, which needs
# res_speech) and func_channel give Gosub and hangup handlers; app_dial + bridge_simple bridge
# calls.
MODULES="
  app_voicemail_odbc res_adsi res_smdi
  res_odbc res_odbc_transaction res_config_odbc res_realtime
  pbx_config res_timing_timerfd res_clioriginate
  format_wav format_pcm format_gsm format_wav_gsm
  codec_ulaw codec_alaw codec_gsm
  app_playback app_record app_senddtmf app_echo app_system app_verbose app_dial app_read
  app_exec app_while app_originate app_stack res_agi res_speech bridge_simple
  func_callerid func_strings func_channel func_logic func_vmcount func_global func_env
  func_shell func_math func_cut func_db func_realtime func_timeout
"
CONFIGURE_FLAGS="--without-pjproject-bundled --without-pjproject --with-jansson-bundled=no
  --without-libjwt-bundled"

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/voxmail-asterisk-build.XXXXXX")
cleanup() { rm -rf "$BUILD"; }
trap cleanup EXIT
LOG="$BUILD/build.log"
step() {
  local what=$1
  shift
  local t0=$SECONDS
  if ! "$@" >>"$LOG" 2>&1; then
    echo "build.sh: $what failed; the end of the log:" >&2
    tail -n 60 "$LOG" >&2
    exit 1
  fi
  echo "build.sh: $what ($((SECONDS - t0)) s)" >&2
}

echo "build.sh: building Asterisk into $PREFIX (log: $LOG)" >&2
rm -rf "$PREFIX"
step "unpack" tar -xJf "$TARBALL" -C "$BUILD"
SRC=$(find "$BUILD" -mindepth 1 -maxdepth 1 -type d -name 'asterisk*' | head -n 1)
cd "$SRC"
# shellcheck disable=SC2086
step "configure" ./configure --prefix="$PREFIX" $CONFIGURE_FLAGS
step "menuselect" make menuselect.makeopts
# --disable-all must be its own call: given with --enable it silently wins over them.
step "menuselect --disable-all" menuselect/menuselect --disable-all menuselect.makeopts
enable=()
for m in $MODULES; do
  enable+=(--enable "$m")
done
step "menuselect --enable" menuselect/menuselect "${enable[@]}" menuselect.makeopts
for m in $MODULES; do
  # menuselect.makeopts lists the modules that are disabled or failed their dependencies
  # (MENUSELECT_BUILD_DEPS is something else: what the build depends on).
  if grep -v '^MENUSELECT_BUILD_DEPS=' menuselect.makeopts | grep -Eq "[= ]$m( |$)"; then
    echo "build.sh: menuselect left $m disabled (missing dependency?)" >&2
    exit 1
  fi
done
step "make -j2" make -j2
step "make install" make install
# Installed modules must include every one asked for.
for m in $MODULES; do
  if [ ! -f "$PREFIX/lib/asterisk/modules/$m.so" ]; then
    echo "build.sh: $m.so was not installed" >&2
    exit 1
  fi
done
cd /
date -u +%FT%TZ >"$MARKER"

# Older prefixes in the same cache root are left-overs of earlier keys.
for old in "$CACHE_ROOT"/asterisk-*; do
  if [ -d "$old" ] && [ "$old" != "$PREFIX" ]; then
    rm -rf "$old"
  fi
done
echo "$PREFIX"
