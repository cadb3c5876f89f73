#!/usr/bin/env bash
# Load test of examples/http_service.rs over loopback: a steady load, then a 10x
# overload, each with hey's summary next to the flow's own figures (GET /stats), then a
# SIGTERM that must end the server with exit 0. Not part of CI (about 30 s, and it
# installs hey from Debian's packages if it is missing).
#
# Usage: bench/http/load.sh [SECONDS]   (each phase runs SECONDS, default 10)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-10}"
addr=127.0.0.1:18080
steady=16
overload=$((steady * 10))

if ! command -v hey >/dev/null; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq hey >/dev/null
fi
command -v curl >/dev/null || { echo "load.sh needs curl" >&2; exit 1; }

cd "$root"
cargo build --release --example http_service
work="$(mktemp -d)"
trap 'rm -rf "$work"; [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true' EXIT

# A body of 512 little-endian f32 (2048 bytes).
python3 -c 'import struct, sys; sys.stdout.buffer.write(struct.pack("<512f", *[((i * 37) % 200) / 100 - 1 for i in range(512)]))' >"$work/body.bin"

target/release/examples/http_service --addr "$addr" 2>"$work/server.log" &
server=$!
for _ in $(seq 1 600); do
  curl -fs "http://$addr/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
curl -fs "http://$addr/readyz" >/dev/null

echo "machine: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%d)"
url="http://$addr/v1/classify"
hey -z 1s -c "$steady" -m POST -T application/octet-stream -D "$work/body.bin" "$url" >/dev/null # warm-up

phase() { # name concurrency
  local before after
  before="$(curl -fs "http://$addr/stats")"
  echo
  echo "=== $1: hey -z ${seconds}s -c $2 -m POST -D body.bin (2048-byte body) $url"
  hey -z "${seconds}s" -c "$2" -m POST -T application/octet-stream -D "$work/body.bin" "$url" \
    | sed -n '/^Summary:/,/Requests\/sec/p;/Latency distribution:/,/99%/p;/Status code distribution:/,/^$/p;/Error distribution:/,/^$/p'
  after="$(curl -fs "http://$addr/stats")"
  python3 - "$before" "$after" <<'PY'
import json, sys
b, a = (json.loads(x)["stages"][0] for x in sys.argv[1:3])
tasks, batches = a["tasks"] - b["tasks"], a["batches"] - b["batches"]
print(f"  flow (GET /stats, this phase): stage={a['name']} workers={a['workers']} tasks={tasks} "
      f"batches={batches} mean_batch_size={tasks / max(batches, 1):.1f} "
      f"failed={a['failed'] - b['failed']} abandoned={a['abandoned'] - b['abandoned']} "
      f"restarts={a['restarts'] - b['restarts']}")
PY
}
phase "steady" "$steady"
phase "overload (10x)" "$overload"

echo
kill -TERM "$server"
if wait "$server"; then status=0; else status=$?; fi
server=""
tail -n 2 "$work/server.log"
echo "server exit status after SIGTERM: $status"
exit "$status"
