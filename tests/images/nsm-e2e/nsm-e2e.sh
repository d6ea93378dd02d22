#!/bin/sh
# The application of the "nsm-e2e" test image: markers around nsm-pcr's lines, then exit status 3 whatever
# nsm-pcr did (its own failure is its stderr line and the E2E-APP-NSM-PCR-STATUS line).
echo E2E-APP-START
/usr/bin/nsm-pcr 0 1 2
echo "E2E-APP-NSM-PCR-STATUS $?"
echo E2E-APP-DONE
exit 3
