#!/bin/sh
# Checks the systemd units: generates them from the .in files the way make
# does (into a temporary directory), then
#   - no @placeholder@ is left;
#   - "systemd-analyze verify" has nothing to say about them (the service,
#     the socket and an instance of the template);
#   - the configuration check that ExecReload= runs first accepts the shipped
#     configuration (when the daemon is built);
#   - the socket unit matches the shipped configuration's listener;
#   - "systemd-analyze security --offline=yes" rates the service and an
#     instance of the template 2.0 or better.
# Exit status: 0 pass, 1 fail, 77 skip (no systemd-analyze), 99 hard error.

top_srcdir=${top_srcdir:-$(dirname "$0")/../..}
top_builddir=${top_builddir:-.}
units=$top_srcdir/systemd
conf=$top_srcdir/conf/mio-echod.conf
max_exposure=2.0

LC_ALL=C
SYSTEMD_COLORS=0
SYSTEMD_PAGER=
SYSTEMD_LOG_COLOR=0
export LC_ALL SYSTEMD_COLORS SYSTEMD_PAGER SYSTEMD_LOG_COLOR

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "SKIP: systemd-analyze is not installed"
    exit 77
fi
for f in mio-echod.service.in mio-echod@.service.in mio-echod.socket; do
    if [ ! -f "$units/$f" ]; then
        echo "ERROR: $units/$f is missing (top_srcdir=$top_srcdir)"
        exit 99
    fi
done
systemd-analyze --version | sed -n 1p

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-units.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 99' HUP INT PIPE TERM
dir=$tmp/units
mkdir "$dir" "$tmp/sbin" "$tmp/etc" "$tmp/etc/mio-echod" "$tmp/doc" || exit 99

# The units name @sbindir@/mio-echod, and verify checks that it is an
# executable: point a fake sbindir's mio-echod at the daemon just built, or
# at /bin/true when there is none, so that a misspelt binary name or a
# placeholder make did not fill in still fails.  libtool's wrapper script
# follows the link to the build tree.
daemon=$top_builddir/src/mio-echod
case $daemon in /*) ;; *) daemon=$(pwd)/$daemon ;; esac
if [ -x "$daemon" ]; then
    ln -s "$daemon" "$tmp/sbin/mio-echod" || exit 99
    have_daemon=yes
else
    echo "note: $daemon is not built: the units run /bin/true"
    ln -s /bin/true "$tmp/sbin/mio-echod" || exit 99
    have_daemon=no
fi
cp "$conf" "$tmp/etc/mio-echod.conf" || exit 99
cp "$conf" "$tmp/etc/mio-echod/test.conf" || exit 99

# The same substitutions as the Makefile's rule.
for f in mio-echod.service mio-echod@.service; do
    sed -e "s|@sbindir[@]|$tmp/sbin|g" \
        -e "s|@sysconfdir[@]|$tmp/etc|g" \
        -e "s|@docdir[@]|$tmp/doc|g" \
        "$units/$f.in" > "$dir/$f" || exit 99
done
cp "$units/mio-echod.socket" "$dir/" || exit 99

fail=0
bad() {
    echo "FAIL: $*"
    fail=1
}

# ---- placeholders ----
left=$(grep -n '@[A-Za-z_][A-Za-z_0-9]*@' "$dir/mio-echod.service" \
           "$dir/mio-echod@.service" "$dir/mio-echod.socket")
[ -z "$left" ] || bad "placeholders left after substitution:
$left"

# ---- systemd-analyze verify ----
# The units are given as paths; the directory also goes first on the unit
# path (the trailing ":" keeps the built-in directories, for the targets
# they refer to), so that the socket finds its service and the instance its
# template.  --man=no: the man pages of Documentation= are not installed
# here.  --recursive-errors=no: only our units' own errors set the status.
for u in mio-echod.service mio-echod.socket mio-echod@test.service; do
    out=$(cd "$dir" && SYSTEMD_UNIT_PATH="$dir:" \
          systemd-analyze verify --man=no --recursive-errors=no "$dir/$u" 2>&1)
    rc=$?
    ours=$(printf '%s\n' "$out" | grep -F -e "$dir" -e 'mio-echod')
    other=$(printf '%s\n' "$out" | grep -v -F -e "$dir" -e 'mio-echod' | grep -v '^$')
    if [ $rc -ne 0 ] || [ -n "$ours" ]; then
        bad "systemd-analyze verify $u (status $rc):
$out"
    else
        echo "ok: systemd-analyze verify $u"
    fi
    [ -z "$other" ] || printf 'note: about other units (ignored):\n%s\n' "$other"
done

# ---- ExecReload=: the configuration check, then SIGHUP ----
# "%i" is the instance's name; the command is run as systemd would split it
# (our paths have no spaces).
for u in mio-echod.service mio-echod@.service; do
    reload=$(sed -n 's/^ExecReload=//p' "$dir/$u")
    first=$(printf '%s\n' "$reload" | sed -n 1p | sed 's/%i/test/g')
    second=$(printf '%s\n' "$reload" | sed -n 2p)
    # shellcheck disable=SC2016 # $MAINPID is systemd's, not ours
    [ "$second" = '/bin/sh -c '"'"'kill -HUP "$$MAINPID"'"'" ] ||
        bad "$u: the second ExecReload= is not the SIGHUP: $second"
    case $first in
        "$tmp/sbin/mio-echod -t -c "*) ;;
        *) bad "$u: the first ExecReload= is not the configuration check: $first"
           continue ;;
    esac
    if [ $have_daemon = yes ]; then
        # shellcheck disable=SC2086 # split like systemd does
        if out=$($first 2>&1); then
            echo "ok: $u: ExecReload= check: $out"
        else
            bad "$u: '$first' rejects the shipped configuration: $out"
        fi
    fi
done

# ---- the socket unit and the shipped configuration agree ----
# The socket's FileDescriptorName= must name a listener, and its
# ListenStream= addresses must be that listener's listen addresses.
fdname=$(sed -n 's/^FileDescriptorName=//p' "$dir/mio-echod.socket")
streams=$(sed -n 's/^ListenStream=//p' "$dir/mio-echod.socket" | sort)
listen=$(awk -v name="$fdname" '
    /^[ \t]*#/ { next }
    $0 ~ "name[ \t]*=[ \t]*\"" name "\"" { found = 1; next }
    found && /name[ \t]*=/ { exit }
    found && /listen[ \t]*=/ {
        s = $0
        while (match(s, /"[^"]*"/)) {
            print substr(s, RSTART + 1, RLENGTH - 2)
            s = substr(s, RSTART + RLENGTH)
        }
        exit
    }' "$conf" | sort)
streams_=$(printf '%s\n' "$streams" | tr '\n' ' ')
listen_=$(printf '%s\n' "$listen" | tr '\n' ' ')
if [ -z "$fdname" ] || [ -z "$listen" ]; then
    bad "mio-echod.socket: FileDescriptorName=$fdname names no listener with listen addresses in $conf"
elif [ "$streams" != "$listen" ]; then
    bad "mio-echod.socket: ListenStream= (${streams_% }) differ from listener $fdname's listen (${listen_% }) in $conf"
else
    echo "ok: mio-echod.socket matches listener \"$fdname\": ${listen_% }"
fi

# ---- systemd-analyze security ----
# --threshold= is in tenths of the printed exposure (2.0 = 20): the status
# says whether the unit is over it; the printed level is checked as well.
# The directory goes on the unit path so that the instance finds its template.
threshold=$(awk -v m="$max_exposure" 'BEGIN { printf "%d", m * 10 + 0.5 }')
for u in mio-echod.service mio-echod@test.service; do
    out=$(cd "$dir" && SYSTEMD_UNIT_PATH="$dir:" \
          systemd-analyze security --offline=yes --threshold="$threshold" \
          --no-pager "$dir/$u" 2>&1)
    rc=$?
    level=$(printf '%s\n' "$out" |
            sed -n 's/.*Overall exposure level for [^:]*: *\([0-9][0-9.]*\).*/\1/p')
    if [ -z "$level" ]; then
        bad "systemd-analyze security $u printed no exposure level (status $rc):
$out"
    elif [ $rc -ne 0 ] ||
         ! awk -v l="$level" -v m="$max_exposure" 'BEGIN { exit !(l + 0 <= m + 0) }'; then
        bad "systemd-analyze security $u: exposure $level, more than $max_exposure (status $rc):
$out"
    else
        echo "ok: systemd-analyze security $u: exposure $level (at most $max_exposure)"
        # What is left: the checks it fails ("-" in the C locale).
        printf '%s\n' "$out" | grep '^- ' | sed 's/^- */    /'
    fi
done

[ $fail -eq 0 ] && echo "PASS: systemd units"
exit $fail
