#!/bin/sh
# The library's tests once more on io_uring: the binaries built for the
# default backend, run with MIO_BACKEND=io_uring, which mio_poll_new() obeys
# without falling back (the example server inherits it).  Skips (77) with
# the reason when the library has no io_uring or the kernel refuses it.
# test-net-fallback is left out: it links the poll(2)-only library.
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
    if ! "$top/$t"; then
        echo "FAIL: $t on io_uring"
        status=1
    fi
done
exit $status
