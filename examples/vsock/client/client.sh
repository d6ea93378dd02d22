#!/bin/sh
# Runs as the enclave's application: one HTTP/1.0 request to the parent (vsock CID 3, port 8000), the response as
# it comes, and vsock-nc's exit status as the enclave's (the console then says "command exited with status N").
echo "fetching http://parent/ through vsock 3:8000"
printf 'GET / HTTP/1.0\r\nHost: parent\r\n\r\n' | /bin/vsock-nc vsock:3:8000
status=$?
echo "vsock-nc exited with status $status"
exit $status
