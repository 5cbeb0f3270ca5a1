#!/bin/sh
# make install into a DESTDIR, then check the tree a user gets: the daemon
# and mio-echodctl, the configuration (kept when edited), the man pages,
# the library, and the units with real paths.  Then make uninstall leaves
# only the edited configuration.
set -u
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-$(dirname "$0")/../..}
MAKE=${MAKE:-make}
dest=$(mktemp -d "${TMPDIR:-/tmp}/mio-install.XXXXXX") || exit 99
trap 'rm -rf "$dest"' EXIT
log="$dest.log"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

if ! $MAKE -C "$top_builddir" install DESTDIR="$dest" >"$log" 2>&1; then
    cat "$log"; rm -f "$log"
    echo "FAIL: make install"; exit 1
fi

# The one file of a name under the tree, or nothing.
find_one() { find "$dest" -name "$1" \( -type f -o -type l \) | head -n 1; }

sbin=$(find_one mio-echod)
[ -n "$sbin" ] && [ -x "$sbin" ] || fail "no executable mio-echod"
case "$sbin" in */sbin/mio-echod) ;; *) fail "mio-echod not in sbin: $sbin" ;; esac
ctl=$(find_one mio-echodctl)
[ -n "$ctl" ] && [ -x "$ctl" ] || fail "no executable mio-echodctl"
case "$ctl" in */sbin/mio-echodctl) ;; *) fail "mio-echodctl not in sbin: $ctl" ;; esac
conf=$(find_one mio-echod.conf)
[ -n "$conf" ] || fail "no mio-echod.conf"
for page in mio-echod.8 mio-echod.conf.5 mio-echodctl.8 mio.3; do
    p=$(find_one "$page")
    if [ -z "$p" ]; then fail "no man page $page"; continue; fi
    grep -q '@[a-z]*@' "$p" && fail "$page keeps a placeholder"
    case "$p" in */man/man?/"$page") ;; *) fail "$page misplaced: $p" ;; esac
done
[ -n "$(find_one mio.h)" ] || fail "no mio.h"
[ -n "$(find_one mio.pc)" ] || fail "no mio.pc"
# The shared library; the static one where configure --disable-shared
# built no other (libtool's record of the build says which).
if grep -qx 'build_libtool_libs=yes' "$top_builddir/libtool"; then
    lib=$(find_one 'libmio.so.*')
    [ -n "$lib" ] || fail "no libmio.so"
else
    lib=$(find_one libmio.a)
    [ -n "$lib" ] || fail "no libmio.a (configured --disable-shared)"
fi

# A program builds against the installed library with the flags mio(3)
# gives, pkg-config --cflags --libs mio, and the build's own CFLAGS and
# LDFLAGS (a sanitizer's runtime, under .ci/sanitizers).
pc=$(find_one mio.pc)
if [ -n "$pc" ] && [ -n "$lib" ] && command -v pkg-config >/dev/null; then
    prefix=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --variable=prefix mio)
    flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --define-variable=prefix="$dest$prefix" \
        --cflags --libs mio) || fail "pkg-config mio: $flags"
    # shellcheck disable=SC2086 # one word per flag
    out=$(${CC:-cc} ${CFLAGS:-} -o "$dest/mio-echo" "$top_srcdir/examples/mio-echo.c" $flags \
        ${LDFLAGS:-} 2>&1) ||
        fail "building examples/mio-echo.c with $flags: $out"
    rm -f "$dest/mio-echo"
fi

# The installed daemon checks the installed configuration.
if [ -n "$sbin" ] && [ -n "$conf" ] && [ -n "$lib" ]; then
    out=$(LD_LIBRARY_PATH=$(dirname "$lib") "$sbin" -t -c "$conf" 2>&1) ||
        fail "mio-echod -t on the installed configuration: $out"
fi

# The units, when installed, name the installed paths (without DESTDIR).
unit=$(find_one mio-echod.service)
if [ -n "$unit" ]; then
    [ -n "$(find_one 'mio-echod@.service')" ] || fail "no mio-echod@.service"
    [ -n "$(find_one mio-echod.socket)" ] || fail "no mio-echod.socket"
    grep -q '@[a-z]*@' "$unit" && fail "mio-echod.service keeps a placeholder"
    want="ExecStart=${sbin#"$dest"} -f -c ${conf#"$dest"}"
    grep -qxF "$want" "$unit" || fail "mio-echod.service has no line: $want"
else
    echo "note: systemd units not installed (--with-systemdsystemunitdir=no)"
fi

# A second install keeps an edited configuration.
if [ -n "$conf" ]; then
    echo "# edited by check-install" >>"$conf"
    $MAKE -C "$top_builddir" install DESTDIR="$dest" >"$log" 2>&1 || fail "second make install"
    tail -n 1 "$conf" | grep -q 'edited by check-install' ||
        fail "a second make install overwrote the edited configuration"
fi

# Uninstall removes all but the edited configuration.
$MAKE -C "$top_builddir" uninstall DESTDIR="$dest" >"$log" 2>&1 || fail "make uninstall"
left=$(find "$dest" -type f ! -name mio-echod.conf)
[ -z "$left" ] || fail "make uninstall left: $left"
[ -z "$conf" ] || [ -f "$conf" ] || fail "make uninstall removed the edited configuration"
rm -f "$log"

[ "$fails" -eq 0 ] || exit 1
echo "install tree OK"
