#!/bin/sh
# The library's tests once more on io_uring: the binaries built for the
# default backend, run with MIO_BACKEND=io_uring, which mio_poll_new() obeys
# without falling back (the example server inherits it).  Skips (77) with
# the reason when the library has no io_uring or the kernel refuses it.
# test-net-fallback is left out: it links the poll(2)-only library.
# MIO_TEST_RUNNER, when set, is put before each test binary (CI's valgrind
# pass sets it to its valgrind command: the .sh tests' own log compiler is
# the shell).
top=${top_builddir:-.}
reason=$("$top/tests/lib/uring-probe")
rc=$?
echo "$reason"
[ $rc = 0 ] || exit $rc
MIO_BACKEND=io_uring
export MIO_BACKEND
status=0
for t in tests/lib/test-poll tests/lib/test-registry tests/lib/test-waker \
    tests/lib/test-net tests/test-example; do
    echo "==== $t on io_uring"
    # shellcheck disable=SC2086 # the runner is a command with its options
    if ! ${MIO_TEST_RUNNER:-} "$top/$t"; then
        echo "FAIL: $t on io_uring"
        status=1
    fi
done
exit $status
