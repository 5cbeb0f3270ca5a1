#!/bin/sh
# Runs one test again on another backend of libmio: the log compiler of
# the X-on-BACKEND.run stamps Makefile.am makes (tests/daemon/test-udp-on-poll.run
# runs tests/daemon/test-udp with MIO_BACKEND=poll).  mio_poll_new() obeys
# MIO_BACKEND without falling back, and the daemons and the example server
# the tests start inherit it (the daemon's poller = "auto" is mio_poll_new()).
# io_uring runs skip (77), saying why, when the library was built without it
# or the kernel refuses it.  MIO_TEST_RUNNER, when set, is put before the
# real test program (CI's valgrind pass sets it to its valgrind command),
# through libtool, whose wrapper script would else be what it ran.
run=${1:?usage: on-backend.sh TEST-on-BACKEND.run}
name=${run%.run}
backend=${name##*-on-}
test=${name%-on-*}
top=${top_builddir:-.}
test=${test#./}
case $test in
/*) ;;
*) test=$top/$test ;;
esac
if [ "$backend" = io_uring ]; then
    reason=$("$top/tests/lib/uring-probe")
    rc=$?
    echo "$reason"
    [ $rc = 0 ] || exit $rc
fi
MIO_BACKEND=$backend
export MIO_BACKEND
echo "==== $test on $backend (MIO_BACKEND=$backend)"
if [ -n "${MIO_TEST_RUNNER:-}" ]; then
    # shellcheck disable=SC2086 # the runner is a command with its options
    exec "$top/libtool" --mode=execute $MIO_TEST_RUNNER "$test"
fi
exec "$test"
