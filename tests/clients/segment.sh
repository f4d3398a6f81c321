#!/bin/sh
# Send one frame to a running `cellpoint serve` with curl and save the label image it returns.
#
#   tests/clients/segment.sh http://127.0.0.1:8765 frame.tif labels.tif [QUERY]
#
# FRAME: a TIFF or PNG file. QUERY: e.g. "diameter=30&pixel_size=0.65". Prints the cell count; a refused frame
# prints the service's one-line reason and exits non-zero. $CELLPOINT_TOKEN is sent when set.
set -eu
url=${1:?usage: segment.sh URL FRAME LABELS.tif [QUERY]}
frame=${2:?usage: segment.sh URL FRAME LABELS.tif [QUERY]}
labels=${3:?usage: segment.sh URL FRAME LABELS.tif [QUERY]}
query=${4:+?$4}
case "$frame" in
    *.png | *.PNG) type=image/png ;;
    *) type=image/tiff ;;
esac
set -- --silent --show-error --fail-with-body --max-time 300 \
    -H "Content-Type: $type" -H "Accept: image/tiff" --data-binary "@$frame" \
    --dump-header - --output "$labels"
if [ -n "${CELLPOINT_TOKEN:-}" ]; then
    set -- "$@" -H "Authorization: Bearer $CELLPOINT_TOKEN"
fi
if ! headers=$(curl "$@" "$url/segment$query"); then
    cat "$labels" >&2 2>/dev/null || true   # the service's one-line reason
    rm -f "$labels"
    exit 1
fi
printf '%s\n' "$headers" | tr -d '\r' | sed -n 's/^[Xx]-[Cc]ells: */cells: /p'
