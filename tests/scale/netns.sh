# shellcheck shell=bash
# Sourced by the tests of tests/scale/ (bash): what they need to run, the
# network namespaces of one run (named for the test and its process id, so
# that runs side by side never meet), the hosts' mio-echod, bounded waits,
# and the clean-up that removes every namespace and process of the run,
# whatever way the test ends.
#
# The topology, made by scale_topology: a client namespace (10.70.0.2 on
# eth0) and a middle one (10.70.0.1 on c0; the balancer or the router),
# linked by a veth pair; three host namespaces h1..h3, host K at 10.70.K.2
# on its eth0, linked to the middle one's hK (10.70.K.1), its default route
# through it.  Nothing is connected to the namespace the test starts in:
# the traffic stays between these.

set -u -o pipefail
export LC_ALL=C
: "${scale_name:?the test sets scale_name before sourcing netns.sh}"
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-.}
ECHOD=$top_builddir/src/mio-echod
ECHODCTL=$top_builddir/src/mio-echodctl
# shellcheck disable=SC2034 # used by the tests that source this
LOAD=$top_srcdir/tests/scale/load.py
CLIENT_ADDR=10.70.0.2
MIDDLE_ADDR=10.70.0.1

scale_namespaces=""
scale_pids=""
scale_tmp=""

# Skips the test (exit 77), saying why.
scale_skip() {
    echo "SKIP: $scale_name: $*"
    exit 77
}

# Skips unless this can run here: root, ip netns, python3; the built
# daemon must be there (exit 99, a hard error, when not).
scale_need() {
    [ "$(id -u)" = 0 ] || scale_skip "needs root to make network namespaces"
    command -v ip >/dev/null || scale_skip "no ip command (iproute2)"
    command -v python3 >/dev/null || scale_skip "no python3 (the load client)"
    if ! [ -x "$ECHOD" ] || ! [ -x "$ECHODCTL" ]; then
        echo "ERROR: $scale_name: no $ECHOD or $ECHODCTL (top_builddir=$top_builddir)"
        exit 99
    fi
    local probe="mio-probe-$$"
    ip netns add "$probe" 2>/dev/null || scale_skip "ip netns add fails here (no network namespaces)"
    local ok=0
    ip -n "$probe" link add name va type veth peer name vb >/dev/null 2>&1 && ok=1
    ip netns del "$probe"
    [ "$ok" = 1 ] || scale_skip "no veth pairs in a network namespace here"
}

# The temporary directory, the clean-up trap, then the namespaces.
scale_begin() {
    scale_tmp=$(mktemp -d "${TMPDIR:-/tmp}/mio-scale.XXXXXX") || exit 99
    trap scale_cleanup EXIT
    trap 'exit 99' HUP INT TERM
}

# Ends every process the run started (by its id: the ones recorded, then
# any still in one of the run's namespaces, which only the run made), then
# deletes the namespaces and the temporary directory.
scale_cleanup() {
    local pid ns _
    # Twice: a daemon's second SIGTERM ends its drain_delay.
    for pid in $scale_pids; do kill -TERM "$pid" 2>/dev/null; done
    sleep 0.2
    for pid in $scale_pids; do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 30); do
        local alive=0
        for pid in $scale_pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in $scale_pids; do kill -KILL "$pid" 2>/dev/null; done
    for ns in $scale_namespaces; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    if [ -n "$scale_tmp" ]; then
        if [ -n "${SCALE_KEEP:-}" ]; then echo "kept $scale_tmp"; else rm -rf "$scale_tmp"; fi
    fi
}

# The name of the run's namespace for a role (c, m, h1, h2, h3).
ns() { echo "mio-$scale_name-$$-$1"; }

# Runs a command in the role's namespace.
in_ns() {
    local role=$1
    shift
    ip netns exec "$(ns "$role")" "$@"
}

# Starts a command in the role's namespace in the background, its output
# into a file: spawn ROLE FILE COMMAND...; its process id (ip netns exec
# becomes the command) in $spawned, recorded for the clean-up.
spawned=""
spawn() {
    local role=$1 out=$2
    shift 2
    ip netns exec "$(ns "$role")" "$@" >"$out" 2>&1 &
    spawned=$!
    scale_pids="$scale_pids $spawned"
}

# Makes a namespace for a role, its loopback up, and records it.
make_ns() {
    local name
    name=$(ns "$1")
    ip netns add "$name" || exit 99
    scale_namespaces="$scale_namespaces $name"
    ip -n "$name" link set lo up
}

# Links two namespaces with a veth pair: role1 if1 addr1 role2 if2 addr2
# (addresses with their prefix length).
link_ns() {
    ip -n "$(ns "$1")" link add name "$2" type veth peer name "$5" netns "$(ns "$4")" || exit 99
    ip -n "$(ns "$1")" addr add "$3" dev "$2"
    ip -n "$(ns "$4")" addr add "$6" dev "$5"
    ip -n "$(ns "$1")" link set "$2" up
    ip -n "$(ns "$4")" link set "$5" up
}

# The five namespaces and their links (see the top of this file); the
# middle one forwards, without reverse-path filtering (the hosts answer
# from an anycast address that the middle one routes through several
# links).
scale_topology() {
    local k
    for r in c m h1 h2 h3; do make_ns "$r"; done
    in_ns m sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
        net.ipv4.ip_forward=1 || exit 99
    link_ns c eth0 "$CLIENT_ADDR/24" m c0 "$MIDDLE_ADDR/24"
    ip -n "$(ns c)" route add default via "$MIDDLE_ADDR"
    # Wide enough that a run uses each port once.
    in_ns c sysctl -qw net.ipv4.ip_local_port_range="10000 65000"
    for k in 1 2 3; do
        link_ns "h$k" eth0 "10.70.$k.2/24" m "h$k" "10.70.$k.1/24"
        ip -n "$(ns "h$k")" route add default via "10.70.$k.1"
    done
}

# Starts mio-echod in host K's namespace with the configuration text given
# (its log, access lines included, in $scale_tmp/hK.log; its control
# socket $scale_tmp/hK.sock, which the text must name); records its id in
# host_pid[K].
declare -a host_pid
start_host() {
    local k=$1 conf=$2
    printf '%s\n' "$conf" >"$scale_tmp/h$k.conf"
    spawn "h$k" "$scale_tmp/h$k.log" "$ECHOD" -f -c "$scale_tmp/h$k.conf"
    host_pid[k]=$spawned
}

# Waits (at most `tenths` tenths of a second) until the command succeeds.
wait_for() {
    local tenths=$1
    shift
    local _
    for _ in $(seq "$tenths"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    "$@" >/dev/null 2>&1
}

# Host K's daemon answers on its control socket.
host_up() { "$ECHODCTL" -S "$scale_tmp/h$1.sock" -T 2 show listeners; }

# Connections open on host K's listener "echo".
host_open() {
    "$ECHODCTL" -S "$scale_tmp/h$1.sock" -T 2 show listeners 2>/dev/null |
        awk '$1 == "echo" { print $4 }'
}

# The host (1 to 3) with the most connections open: the one to drain, so
# that the drain has streams to keep.
busiest_host() {
    local k best=3 most=-1 n
    for k in 1 2 3; do
        n=$(host_open "$k")
        if [ -n "$n" ] && [ "$n" -gt "$most" ]; then most=$n best=$k; fi
    done
    echo "$best"
}

# Waits (at most `tenths`) for a process of the run to end; 0 if it did.
wait_gone() {
    local pid=$1 tenths=$2 _
    for _ in $(seq "$tenths"); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    return 1
}

# Stops a host's daemon at once (two SIGTERMs: the second ends a
# drain_delay) and waits for it, so that its log is complete.
stop_host() {
    local pid=${host_pid[$1]}
    kill -TERM "$pid" 2>/dev/null
    sleep 0.1
    kill -TERM "$pid" 2>/dev/null
    wait_gone "$pid" 50 || echo "note: host h$1's daemon did not stop within 5 s"
}

# The status of host K's GET /health (its stats listener, port 9107) as
# the middle namespace sees it, or "none".
health_of() {
    local code
    # shellcheck disable=SC2016 # the inner shell expands $1
    code=$(in_ns m timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/9107" &&
        printf "GET /health HTTP/1.0\r\n\r\n" >&3 && read -r _ code _ <&3 && echo "$code"' \
        _ "10.70.$1.2" 2>/dev/null)
    echo "${code:-none}"
}

# Host K's /health answers the status given.
health_is() { [ "$(health_of "$1")" = "$2" ]; }

# Seconds since the epoch, with a fraction.
now() { date +%s.%N; }

# b - a, in seconds with 3 decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
