#!/bin/sh
# The application of the "vsock-e2e" test image: a start marker, then two vsock-nc listeners, each printing
# "vsock-nc: listening on vsock:PORT" once it listens and (-v) a line per connection:
#   vsock:5000  echoes every byte back (a host publishes a TCP port to it: --publish HOSTPORT:5000)
#   vsock:5002  a relay: each connection becomes a connection to the parent, CID 3 port 8001, which the host forwards
#               to a TCP service (--forward 8001=tcp:HOST:PORT)
# The listeners run until the enclave ends; should both end, a marker says so and the enclave ends with status 1.
echo VSOCK-E2E-START
/bin/vsock-nc -l -v vsock:5000 --echo &
/bin/vsock-nc -l -v vsock:5002 -e /bin/vsock-nc vsock:3:8001 &
wait
echo VSOCK-E2E-LISTENERS-ENDED
exit 1
