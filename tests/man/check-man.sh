#!/bin/sh
# Checks the man pages, as an automake test (exit 77: skipped, no mandoc):
#  - mandoc -Tlint -Wwarning finds nothing in man/mio-echod.8,
#    man/mio-echod.conf.5 and man/mio.3 (their .in sources where the build
#    substitutes @sysconfdir@);
#  - every setting src/config-table.c has (table_settings[]) has an entry
#    in mio-echod.conf(5), tagged ".It Ic NAME" in the list of its level:
#    top-level settings in GLOBAL SETTINGS, the log group's nested in the
#    ".It Ic log" entry, a listener's in LISTENERS; and no such entry names
#    a setting the loader does not accept;
#  - every setting's name appears as "NAME =" (or "NAME :"), possibly
#    commented out, in conf/mio-echod.conf;
#  - generated pages in the build tree have no @placeholder@ left.
# Each problem is printed; the status is 1 if there was any.

srcdir=${top_srcdir:-.}
builddir=${top_builddir:-.}
config_c=$srcdir/src/config-table.c
shipped=$srcdir/conf/mio-echod.conf
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
for page in mio-echod.8 mio-echod.conf.5 mio.3; do
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

# ---- settings ----------------------------------------------------------------
conf5=$(page_source mio-echod.conf.5)
[ -n "$conf5" ] || exit 1

if [ ! -f "$config_c" ]; then
    fail "$config_c: missing"
    exit 1
fi
keys=$(sed -n '/^const struct setting table_settings\[\] = {/,/^};/p' "$config_c" |
       grep -o '^ *{ *[A-Z_]*("[^"]*"' | grep -o '"[^"]*"' | tr -d '"')
if [ -z "$keys" ]; then
    fail "$config_c: no setting in table_settings[] = { ... };"
    exit 1
fi

# The settings mio-echod.conf(5) documents, one path per line ("workers",
# "log.target", "listeners.balance"): each ".It Ic NAME" of a list in
# GLOBAL SETTINGS or LISTENERS, under the ".It Ic" entry its list is nested
# in, if any.
documented=$(awk '
    /^\.Sh / { sec = $0; sub(/^\.Sh[ \t]+/, "", sec); gsub(/"/, "", sec)
               depth = 0; next }
    /^\.Bl([ \t]|$)/ { depth++; tag[depth] = ""; next }
    /^\.El([ \t]|$)/ { if (depth > 0) depth--; next }
    /^\.It([ \t]|$)/ {
        if (depth == 0)
            next
        tag[depth] = ""
        if ($2 != "Ic" || $3 == "")
            next
        if (sec != "GLOBAL SETTINGS" && sec != "LISTENERS")
            next
        parent = depth > 1 ? tag[depth - 1] : ""
        if (parent == "" && sec == "LISTENERS")
            parent = "listeners"
        tag[depth] = parent == "" ? $3 : parent "." $3
        print tag[depth]
    }
' "$conf5")

for key in $keys; do
    name=${key##*.}
    if ! printf '%s\n' "$documented" | grep -Fqx "$key"; then
        case $key in
        listeners.*) where="LISTENERS" ;;
        log.*) where="the .It Ic log entry of GLOBAL SETTINGS" ;;
        *) where="GLOBAL SETTINGS" ;;
        esac
        fail "$conf5: no \".It Ic $name\" in $where for setting $key"
    fi
    if ! grep -Eq "^[[:space:]#/]*${name}[[:space:]]*[=:]" "$shipped"; then
        fail "$shipped: setting $key ($name = ...) is not there"
    fi
done

for path in $documented; do
    if ! printf '%s\n' "$keys" | grep -Fqx "$path"; then
        fail "$conf5: \".It Ic ${path##*.}\" documents $path, which src/config-table.c does not have"
    fi
done

exit $status
