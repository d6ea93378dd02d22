#!/bin/sh
# The application of the "hello" test image (nitro-cli's own example does the same): greet every 5 seconds.
while true; do
  echo "$HELLO"
  sleep 5
done
