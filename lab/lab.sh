#!/usr/bin/env bash
# The lab, one implementation for `make lab`, Molecule and `make bench`:
#   lab.sh up | down | image | network | check [IP] | status | nodes | ssh IP CMD... | add NAME... | remove NAME...
# Nodes pg-srv1..N at 10.129.0.21.., the application host `app` at .31 and `outsider`
# at .41 (a client that must NOT reach the poolers), all on podman network pgbouncer-lab.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
export CONTAINERS_CONF="$here/containers.conf"
network=${LAB_NETWORK:-pgbouncer-lab}
subnet=10.129.0.0/24
suite=${LAB_DEBIAN:-bookworm}
count=${LAB_NODES:-3}
state=${LAB_STATE:-$root/.lab}
key="$state/ssh/id_ed25519"

nodes() {
  local i
  for ((i = 1; i <= count; i++)); do echo "pg-srv$i 10.129.0.$((20 + i))"; done
  echo "app 10.129.0.31"
  echo "outsider 10.129.0.41"
}

bridge() { podman network inspect --format '{{.NetworkInterface}}' "$network" 2>/dev/null; }

# Refuse unless the lab network exists and the kernel routes the lab subnet through its
# bridge: then no packet for 10.129.0.x can leave by the default route.
check() {
  local target=${1:-10.129.0.21}
  podman network exists "$network" || { echo "lab network $network does not exist: run 'make lab'" >&2; return 1; }
  local dev
  dev=$(bridge)
  ip -o route get "$target" 2>/dev/null | grep -q " dev $dev " \
    || { echo "$target is not routed via lab bridge $dev; refusing" >&2; return 1; }
}

wait_node() {
  local name=$1 ip=$2 i
  for ((i = 0; i < 60; i++)); do
    if podman exec "$name" systemctl is-active --quiet ssh 2>/dev/null \
      && ssh_node "$ip" true 2>/dev/null; then return 0; fi
    sleep 1
  done
  echo "node $name did not come up within 60 s" >&2
  podman logs --tail 30 "$name" >&2 || true
  return 1
}

ssh_node() {
  local ip=$1
  shift
  ssh -F "$state/ssh/config" "$ip" "$@"
}

# ssh_config for the lab: tests (testinfra) and `lab.sh ssh` use it.
write_ssh_config() {
  cat > "$state/ssh/config" <<CONF
Host 10.129.0.*
  User root
  IdentityFile $key
  IdentitiesOnly yes
  BatchMode yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  ConnectTimeout 5
  ProxyCommand $here/connect %h %p
  ControlMaster auto
  ControlPath $state/ssh/cm-%h
  ControlPersist 60s
CONF
}

ensure_network() {
  podman network exists "$network" \
    || podman network create --subnet "$subnet" --gateway 10.129.0.1 "$network" >/dev/null
}

# The node image (lab/node-image.sh): built once per recipe; the build needs the network.
image() {
  ensure_network
  LAB_NETWORK=$network "$here/node-image.sh" "$suite"
}

up() {
  local image name ip
  image=$(image)
  mkdir -p "$state/ssh"
  [ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C pgbouncer-lab -f "$key"
  write_ssh_config
  while read -r name ip; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; then continue; fi
    podman rm -f "$name" >/dev/null 2>&1 || true
    podman run -d --name "$name" --hostname "$name" --label "pgbouncer-lab=$network" \
      --network "$network" --ip "$ip" --privileged --systemd=always \
      -v "$key.pub:/root/.ssh/authorized_keys:ro" "$image" /sbin/init >/dev/null
  done < <(nodes)
  check # netavark makes the bridge with the first container: only now can the route be checked
  while read -r name ip; do wait_node "$name" "$ip"; done < <(nodes)
  echo "lab up: $(nodes | awk '{printf "%s=%s ", $1, $2}')"
}

# Extra nodes, outside the lab's own pg-srv1..LAB_NODES, app and outsider (for example the
# fresh nodes `make bench` converges): pg-srvN at 10.129.0.(20+N), N up to 10 (.31 is app).
extra_ip() {
  local name=$1 n
  [[ $name =~ ^pg-srv([0-9]+)$ ]] || { echo "$name: extra nodes are named pg-srvN" >&2; return 1; }
  n=${BASH_REMATCH[1]}
  if ((n <= count || n > 10)); then
    echo "$name: not an extra node (pg-srv1..$count belong to the lab; at most pg-srv10)" >&2
    return 1
  fi
  echo "10.129.0.$((20 + n))"
}

# Create the named extra nodes that are not running yet; the lab itself must be up.
# LAB_IMAGE overrides the node image.
add() {
  local image name ip
  [ $# -gt 0 ] || { echo "usage: $0 add pg-srvN..." >&2; return 2; }
  for name in "$@"; do extra_ip "$name" > /dev/null; done
  check
  [ -f "$key" ] || { echo "no lab key $key: run 'make lab'" >&2; return 1; }
  image=${LAB_IMAGE:-$(image)}
  for name in "$@"; do
    ip=$(extra_ip "$name")
    if [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; then continue; fi
    podman rm -f "$name" >/dev/null 2>&1 || true
    podman run -d --name "$name" --hostname "$name" --label "pgbouncer-lab=$network" \
      --network "$network" --ip "$ip" --privileged --systemd=always \
      -v "$key.pub:/root/.ssh/authorized_keys:ro" "$image" /sbin/init >/dev/null
  done
  for name in "$@"; do
    ip=$(extra_ip "$name")
    check "$ip"
    wait_node "$name" "$ip"
  done
  echo "added: $*"
}

# Remove the named extra nodes (never the lab's own nodes, never anything not labelled lab).
remove() {
  local name
  [ $# -gt 0 ] || { echo "usage: $0 remove pg-srvN..." >&2; return 2; }
  for name in "$@"; do extra_ip "$name" > /dev/null; done
  for name in "$@"; do
    podman container exists "$name" || continue
    [ "$(podman inspect --format '{{index .Config.Labels "pgbouncer-lab"}}' "$name")" = "$network" ] \
      || { echo "$name is not a node of lab $network; not removing it" >&2; return 1; }
    podman rm -f -t 2 "$name" >/dev/null
    rm -f "$state/ssh/cm-$(extra_ip "$name")"
  done
  echo "removed: $*"
}

down() {
  podman ps -aq --filter "label=pgbouncer-lab=$network" | xargs -r podman rm -f -t 2 >/dev/null
  # An image build (lab/node-image.sh) may still use the network: then it stays, for the next up.
  if podman network exists "$network" && ! podman network rm "$network" >/dev/null 2>&1; then
    echo "network $network is still in use (an image build?); left in place"
  fi
  rm -rf "$state/ssh"
  echo "lab down"
}

status() {
  check
  podman ps --filter "label=pgbouncer-lab=$network" --format '{{.Names}} {{.Status}}'
}

case "${1:-}" in
  up | down | status | nodes | image) "$1" ;;
  network) ensure_network ;;
  check) check "${2:-10.129.0.21}" ;;
  ssh) check && shift && ssh_node "$@" ;;
  add | remove)
    cmd=$1
    shift
    "$cmd" "$@"
    ;;
  *) echo "usage: $0 up|down|image|network|check|status|nodes|ssh IP CMD...|add NAME...|remove NAME..." >&2; exit 2 ;;
esac
