# shellcheck shell=bash disable=SC2317 # the role adds the #!/bin/bash line; probes are called by name
# keepalived's vrrp_script for the pgbouncer.cluster VIP (installed by the keepalived role).
# Exit 0 only when every probe given passes; else print why and exit 1.
#
#   keepalived-check [--timeout SECONDS] [--haproxy ADDRESS:PORT] [--health ADDRESS:PORT]
#                    [--hold FILE --hold-max-age SECONDS]
#
#   --haproxy ADDRESS:PORT  the local HAProxy frontend accepts a TCP connection there
#   --health ADDRESS:PORT   the local health agent answers GET / there with HTTP status 200
#   --hold FILE             while FILE exists and is younger than --hold-max-age seconds, the
#                           health probe is skipped: a planned restart of the local PgBouncer
#                           (playbooks/rolling_restart.yml) must not move the VIP, since this
#                           node's HAProxy keeps serving through the other poolers. An old
#                           hold (a run that died) no longer counts.
#
# keepalived runs it every second: bash's /dev/tcp and coreutils' timeout only, no
# interpreter start-up. Each probe is cut off after --timeout seconds (default 1).
set -u

limit=1
probes=()
hold=""
hold_max_age=0

usage() {
  echo "usage: keepalived-check [--timeout SECONDS] [--haproxy ADDRESS:PORT] [--health ADDRESS:PORT]" \
    "[--hold FILE --hold-max-age SECONDS]" >&2
  exit 2
}

while (($#)); do
  (($# >= 2)) || usage
  case $1 in
    --timeout) limit=$2 ;;
    --haproxy) probes+=("tcp ${2%:*} ${2##*:}") ;;
    --health) probes+=("http ${2%:*} ${2##*:}") ;;
    --hold) hold=$2 ;;
    --hold-max-age) [[ $2 =~ ^[0-9]+$ ]] || usage; hold_max_age=$2 ;;
    *) usage ;;
  esac
  shift 2
done

# A hold younger than its maximum age: the file's mtime, against the clock.
held() {
  local modified now
  [[ -n $hold ]] && modified=$(stat -c %Y -- "$hold" 2>/dev/null) || return 1
  printf -v now '%(%s)T' -1
  (( now - modified < hold_max_age ))
}

# A TCP connection is accepted.
tcp() {
  # shellcheck disable=SC2016 # expanded by the inner bash
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
  if [[ $kind == http ]] && held; then
    continue
  fi
  if ! "$kind" "$address" "$port"; then
    echo "keepalived-check: $kind probe of $address:$port failed"
    exit 1
  fi
done
exit 0
