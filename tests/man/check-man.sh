#!/bin/sh
# Checks the man pages, as an automake test (exit 77: skipped, no mandoc):
#  - mandoc -Tlint -Wwarning finds nothing in man/mio-echod.8,
#    man/mio-echod.conf.5, man/mio-echodctl.8 and man/mio.3 (their .in
#    sources where the build substitutes @sysconfdir@);
#  - generated pages in the build tree have no @placeholder@ left.
# Each problem is printed; the status is 1 if there was any.  That
# mio-echod.conf(5) and conf/mio-echod.conf show every setting the loader
# accepts, and nothing else, is checked from the table of settings by
# tests/unit/test-config.c.

srcdir=${top_srcdir:-.}
builddir=${top_builddir:-.}
status=0

fail() {
    echo "check-man: $*" >&2
    status=1
}

if ! command -v mandoc >/dev/null 2>&1; then
    echo "check-man: mandoc is not installed: skipped"
    exit 77
fi

# The source of a page: NAME.in where there is one, else NAME.
page_source() {
    if [ -f "$srcdir/man/$1.in" ]; then
        echo "$srcdir/man/$1.in"
    elif [ -f "$srcdir/man/$1" ]; then
        echo "$srcdir/man/$1"
    fi
}

# ---- lint ------------------------------------------------------------------
for page in mio-echod.8 mio-echod.conf.5 mio-echodctl.8 mio.3; do
    src=$(page_source "$page")
    if [ -z "$src" ]; then
        fail "man/$page: missing (nor man/$page.in)"
        continue
    fi
    out=$(mandoc -Tlint -Wwarning "$src" 2>&1)
    rc=$?
    if [ "$rc" -ge 2 ] || [ -n "$out" ]; then
        fail "$src: mandoc -Tlint -Wwarning exited $rc:"
        printf '%s\n' "$out" >&2
    fi
    if [ -f "$srcdir/man/$page.in" ] && [ -f "$builddir/man/$page" ] &&
       grep -n '@[A-Za-z_]*@' "$builddir/man/$page" >&2; then
        fail "$builddir/man/$page: placeholders left (above)"
    fi
done

exit $status
