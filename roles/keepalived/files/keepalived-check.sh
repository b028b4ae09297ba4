# keepalived's vrrp_script for the pgbouncer.cluster VIP (installed by the keepalived role).
# Exit 0 only when every probe given passes; else print why and exit 1.
#
#   keepalived-check [--timeout SECONDS] [--haproxy ADDRESS:PORT] [--health ADDRESS:PORT]
#
#   --haproxy ADDRESS:PORT  the local HAProxy frontend accepts a TCP connection there
#   --health ADDRESS:PORT   the local health agent answers GET / there with HTTP status 200
#
# keepalived runs it every second: bash's /dev/tcp and coreutils' timeout only, no
# interpreter start-up. Each probe is cut off after --timeout seconds (default 1).
set -u

limit=1
probes=()

usage() {
  echo "usage: keepalived-check [--timeout SECONDS] [--haproxy ADDRESS:PORT] [--health ADDRESS:PORT]" >&2
  exit 2
}

while (($#)); do
  (($# >= 2)) || usage
  case $1 in
    --timeout) limit=$2 ;;
    --haproxy) probes+=("tcp ${2%:*} ${2##*:}") ;;
    --health) probes+=("http ${2%:*} ${2##*:}") ;;
    *) usage ;;
  esac
  shift 2
done

# A TCP connection is accepted.
tcp() {
  timeout "$limit" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# The status line of GET / is HTTP/1.x 200.
http() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout "$limit" bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "GET / HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$0" >&3
    IFS= read -r status <&3
    [[ $status == "HTTP/1."?" 200"* ]]' "$1" "$2" 2>/dev/null
}

for probe in "${probes[@]}"; do
  read -r kind address port <<< "$probe"
  if ! "$kind" "$address" "$port"; then
    echo "keepalived-check: $kind probe of $address:$port failed"
    exit 1
  fi
done
exit 0
