#!/usr/bin/env bash
# test.sh - run edgeback's tests against the real dev stack, from a fresh machine or not.
#
# Sets up what is missing (deploy/setup.sh), starts the dev stack (idempotent), exports
# its addresses and runs pytest with EDGEBACK_REQUIRE_SERVICES=1, so a missing service
# fails the run instead of skipping tests. Extra arguments go to pytest, e.g.
#   bash deploy/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
bash deploy/dev-stack.sh up
eval "$(bash deploy/dev-stack.sh env)"
export EDGEBACK_REQUIRE_SERVICES=${EDGEBACK_REQUIRE_SERVICES:-1}
if [ $# -eq 0 ]; then set -- tests; fi
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
