# shellcheck shell=bash # the role adds the #!/bin/bash line
# Validate a candidate keepalived.conf (the template task's validate command): the file itself.
# keepalived 2.2.7 (Debian 12) ends its config test with SIGTERM (exit 143) whenever the file
# has a vrrp_script, errors or not (keepalived issue 2587, fixed in 2.2.8): its exit status
# then says nothing, though its messages still come. Only then, a message about a line of the
# vrrp_script or track_script blocks fails the test, and a copy without those blocks is tested
# for the rest. keepalived 2.2.8 and later (Debian 13) answer for the file as it is.
set -euo pipefail
rc=0
out=$(keepalived -t -f "$1" 2>&1) || rc=$?
printf '%s\n' "$out" >&2
[ "$rc" -eq 143 ] && grep -q '^vrrp_script ' "$1" || exit "$rc"
while read -r line; do
  if grep -qF "$1: Line $line)" <<<"$out"; then
    echo "keepalived finds a problem on line $line of the check's blocks (above)" >&2
    exit 1
  fi
done < <(awk '/^vrrp_script /,/^}/ {print NR} /^[[:space:]]*track_script {/,/^[[:space:]]*}/ {print NR}' "$1")
copy=$(mktemp)
trap 'rm -f "$copy"' EXIT
sed -e '/^vrrp_script /,/^}/d' -e '/^[[:space:]]*track_script {/,/^[[:space:]]*}/d' "$1" > "$copy"
keepalived -t -f "$copy"
