# shellcheck shell=bash # the role adds the #!/bin/bash line
# Validate a candidate keepalived.conf (the template task's validate command).
# keepalived 2.2.7 (Debian 12) ends its own config test with SIGTERM (exit 143), errors or
# not, whenever the file has a vrrp_script. The copy tested here leaves out the vrrp_script
# and track_script blocks, which the role renders from fixed text; everything else is checked.
set -euo pipefail
copy=$(mktemp)
trap 'rm -f "$copy"' EXIT
sed -e '/^vrrp_script /,/^}/d' -e '/^[[:space:]]*track_script {/,/^[[:space:]]*}/d' "$1" > "$copy"
keepalived -t -f "$copy"
