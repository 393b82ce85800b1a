#!/bin/sh
# Renders the site into public/: what the build leaves in the tree is the release.
set -eu
mkdir -p public
cat > public/index.html <<HTML
<!doctype html>
<title>hello-static</title>
<h1>Hello from a generic Slipway app</h1>
<p>Built from commit ${SLIPWAY_COMMIT:-unknown} as version ${SLIPWAY_VERSION:-unknown}.</p>
HTML
echo "rendered public/index.html"
