#!/bin/sh
# A pull request's preview, for the CI job of a manifest repository (run from its checkout):
#   1. `reconcile validate` of the branch as checked out: every error with file:line, exit 1;
#   2. `reconcile diff` from the target branch to the pull request, for every node named by a Node
#      manifest, as markdown for a comment on the pull request.
# No kernel and no root are needed. Exit 0 when the preview was made (whether or not it shows
# changes), 1 on an error. The comment is written to $OUT; posting it is the CI's own step.
#
# Settings (environment):
#   RECONCILE  the command to run (default: reconcile)
#   BASE       the revision in force (default: origin/main; fetch it first: shallow CI checkouts lack it)
#   HEAD_REF   the revision to preview (default: HEAD)
#   MANIFESTS  the subdirectory holding the manifests (default: the repository root)
#   OUT        where the markdown goes (default: reconcile-preview.md)
set -eu

RECONCILE=${RECONCILE:-reconcile}
BASE=${BASE:-origin/main}
HEAD_REF=${HEAD_REF:-HEAD}
OUT=${OUT:-reconcile-preview.md}
path_args=""
if [ -n "${MANIFESTS:-}" ]; then path_args="--path $MANIFESTS"; fi

# shellcheck disable=SC2086 # RECONCILE may be a command with arguments; MANIFESTS has no spaces
$RECONCILE validate --source "./${MANIFESTS:-}"

# The checkout is a git repository: both sides are refs of it, fetched into private temporary
# directories (the working tree is not read).
set +e
# shellcheck disable=SC2086
$RECONCILE diff --source . $path_args --base "$BASE" --ref "$HEAD_REF" --all-nodes --output markdown >"$OUT"
rc=$?
set -e
case $rc in
0) echo "reconcile: no datapath changes between $BASE and $HEAD_REF (preview in $OUT)" ;;
2) echo "reconcile: $HEAD_REF changes the datapath; preview in $OUT" ;;
*)
  echo "reconcile: diff failed (exit $rc)" >&2
  exit 1
  ;;
esac
