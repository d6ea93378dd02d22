#!/bin/sh
# Runs as the enclave's application: prints a greeting and what the enclave init prepared for it.
echo "$GREETING"
echo "working directory: $(pwd), user: $(id -u):$(id -g), kernel: $(uname -r)"
