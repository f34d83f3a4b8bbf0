#!/usr/bin/env bash
# Run checkov on the CloudFormation templates in infra/ and model-deploy/templates/ and exit
# non-zero on any finding.
#
# checkov pins an old boto3, so it lives in its own virtual environment, never in the project's:
# CHECKOV_VENV (default: .venv-checkov inside the repository, git-ignored) is
# created on first use and re-created when it does not hold the pinned version.
# Suppressions live in the templates (resource Metadata "checkov: skip:" with a written reason).
# --skip-download keeps checkov offline (no Prisma Cloud guidelines or policies are fetched).
#
# Usage: scripts/checkov.sh [extra checkov arguments]     e.g. scripts/checkov.sh -o json
set -euo pipefail

CHECKOV_VERSION="3.3.30"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHECKOV_VENV="${CHECKOV_VENV:-$REPO_ROOT/.venv-checkov}"
PYTHON="${PYTHON:-python3}"

installed_version() {
    "$CHECKOV_VENV/bin/python" -c \
        'from importlib.metadata import version; print(version("checkov"))' 2>/dev/null || true
}

if [[ "$(installed_version)" != "$CHECKOV_VERSION" ]]; then
    echo "checkov.sh: installing checkov==$CHECKOV_VERSION into $CHECKOV_VENV" >&2
    "$PYTHON" -m venv --clear "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "checkov==$CHECKOV_VERSION"
fi

cd "$REPO_ROOT"
# One checkov run per directory: given two --directory options, checkov 3.3.30 scans the first
# one twice and never the second. Every CloudFormation template of the repository is in one of
# these (tests/reliability/test_infra_policy.py checks that checkov counts all their resources).
status=0
for directory in infra model-deploy/templates; do
    dir_status=0
    # checkov exits 0, printing nothing, when a directory holds no template it recognises: a
    # moved or renamed folder must not turn this scan into a silent pass.
    if ! compgen -G "$directory/*.y*ml" >/dev/null && ! compgen -G "$directory/*.json" >/dev/null; then
        echo "checkov.sh: no CloudFormation template in $directory" >&2
        status=1
        continue
    fi
    output="$("$CHECKOV_VENV/bin/checkov" \
        --directory "$directory" \
        --framework cloudformation \
        --quiet \
        --compact \
        --skip-download \
        "$@")" || dir_status=$?
    printf '%s:\n%s\n' "$directory" "$output"
    # checkov exits 0 when it cannot parse a template (it reports "Parsing errors: N" and scans
    # nothing in it): treat that as a finding too.
    if [[ $dir_status -eq 0 ]] && grep -q "Parsing errors:" <<<"$output"; then
        echo "checkov.sh: checkov could not parse a template in $directory (see above)" >&2
        dir_status=1
    fi
    # ... and prints nothing (or, with -o json, a summary of 0 resources) when it recognises none
    # of the files as CloudFormation.
    if [[ $dir_status -eq 0 ]] && { [[ -z "${output//[[:space:]]/}" ]] \
        || grep -q '"resource_count": 0' <<<"$output"; }; then
        echo "checkov.sh: checkov scanned no CloudFormation resource in $directory" >&2
        dir_status=1
    fi
    if [[ $dir_status -ne 0 ]]; then
        status=$dir_status
    fi
done
exit "$status"
