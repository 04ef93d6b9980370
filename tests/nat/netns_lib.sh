# shellcheck shell=bash
# netns_lib.sh: home NATs and a public "internet" in real network namespaces, for QMesh's NAT tests.
# Sourced by test scripts (bash). Root only: netns_require skips (exit 77) elsewhere. See README.md.
#
#   netns_require                 skip (exit 77, one line) unless root with ip netns and nftables;
#                                 installs iproute2/nftables with apt-get when missing
#   netns_setup                   the public segment (bridge br0 in namespace "wan"); cleanup on exit
#   public NAME                   a host on the public segment (DHT bootstrap, relay, echo server)
#   home NAME TYPE                a home: TYPE open | cone | symmetric | fw6 (see README.md)
#   home_host HOME NAME           another LAN host behind HOME's router (same NAT)
#   add_loss HOME|ROUTER PCT      drop PCT% of the UDP datagrams the router forwards (both ways)
#   in_ns NAME cmd...             run a command in NAME's namespace (NAME: host, or HOME-r router)
#   bg_ns NAME LOG cmd...         start it in the background, output to LOG; sets BG_PID; killed
#                                 at cleanup (bg_stop PID stops one earlier)
#   ns_of NAME, ip4 NAME, ip6 NAME, pub4 NAME, pub6 NAME    print one name or address
#   addrs NAME, netns_summary     print a host's (all hosts') names and addresses
#   step MSG...                   log a step (stderr and $QMN_DIR/steps.log)
#   netns_cleanup                 kill our processes, delete our namespaces (run by the EXIT trap)
#   netns_dump                    rulesets with counters, addresses, routes, background logs
#
# Every namespace is named "${QMN_PREFIX}NAME" with QMN_PREFIX="qmn<PID>-", so parallel runs never
# collide; namespaces of a run whose PID is dead (killed by a timeout) are removed by the next run.
# Environment: QMN_KEEP=1 keeps the namespaces after the run (for debugging), QMN_DEBUG=1 dumps the
# state at exit even on success.

QMN_PREFIX="qmn$$-"
QMN_DIR=""
QMN_CREATED=()
QMN_PIDS=()
QMN_NPUB=0
QMN_NOPEN=0
QMN_NHOMES=0
QMN_PREV_EXIT=""
declare -gA QMN_NS=() QMN_TYPE=() QMN_IP4=() QMN_IP6=() QMN_PUB4=() QMN_PUB6=() QMN_ROUTER=()
declare -gA QMN_HOME_INDEX=() QMN_LAN_NEXT=()

step() {
  local line
  line="[nat $(date +%T.%3N)] $*"
  echo "$line" >&2
  if [ -n "$QMN_DIR" ]; then echo "$line" >>"$QMN_DIR/steps.log"; fi
}

_qmn_die() {
  echo "netns_lib: $*" >&2
  exit 1
}

# Runs a setup command; on failure prints it with its output and exits (the trap cleans up).
_x() {
  local out
  if ! out=$("$@" 2>&1); then
    _qmn_die "failed: $* -> $out"
  fi
  if [ -n "$QMN_DIR" ]; then echo "+ $*" >>"$QMN_DIR/commands.log"; fi
}

_skip() {
  echo "SKIP: $*"
  exit 77
}

netns_require() {
  if [ "$(id -u)" -ne 0 ]; then
    _skip "NAT namespace tests need root (network namespaces, veth, nftables); run them as root"
  fi
  # ip and nft live in /usr/sbin, which a non-login root shell may not have in PATH.
  case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
  if ! command -v ip >/dev/null || ! command -v nft >/dev/null; then
    echo "netns_lib: installing iproute2 and nftables with apt-get" >&2
    if ! command -v apt-get >/dev/null; then
      _skip "ip or nft missing and no apt-get to install iproute2/nftables"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends iproute2 nftables >/dev/null 2>&1; then
      apt-get update -q >/dev/null 2>&1
      apt-get install -y -q --no-install-recommends iproute2 nftables >/dev/null 2>&1 ||
        _skip "could not install iproute2/nftables with apt-get"
    fi
    if ! command -v ip >/dev/null || ! command -v nft >/dev/null; then
      _skip "ip or nft still missing after installing iproute2/nftables"
    fi
  fi
  # Kernel modules (the only thing done outside our namespaces); missing modprobe is fine when
  # they are built in or already loaded.
  modprobe -q -a nf_conntrack nf_nat nft_masq veth bridge 2>/dev/null || true
  local probe="${QMN_PREFIX}probe" out
  if ! out=$(ip netns add "$probe" 2>&1); then
    _skip "ip netns does not work here ($out)"
  fi
  if ! out=$(ip -n "$probe" link add qmnv0 type veth peer name qmnv1 2>&1 &&
    ip netns exec "$probe" nft -f - 2>&1 <<'EOF'
table ip probe {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "qmnv0" masquerade random,fully-random
  }
}
EOF
  ); then
    ip netns del "$probe" 2>/dev/null
    _skip "veth or nftables masquerade does not work in a network namespace here ($out)"
  fi
  ip netns del "$probe"
}

# Removes namespaces of earlier runs (ours: qmn<PID>-) whose creating process is dead.
_qmn_clean_stale() {
  local ns pid p
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ "$ns" =~ ^qmn([0-9]+)- ]] || continue
    pid="${BASH_REMATCH[1]}"
    if [ "$pid" = "$$" ] || kill -0 "$pid" 2>/dev/null; then continue; fi
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null && echo "netns_lib: removed stale namespace $ns" >&2
  done
}

_qmn_exit() {
  local rc=$?
  netns_cleanup "$rc"
  if [ -n "$QMN_PREV_EXIT" ]; then eval "$QMN_PREV_EXIT"; fi
  return "$rc"
}

netns_cleanup() {
  local rc="${1:-0}" p i ns
  if [ -z "$QMN_DIR" ]; then return 0; fi
  if { [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; } || [ "${QMN_DEBUG:-0}" = 1 ]; then netns_dump >&2; fi
  for p in "${QMN_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${QMN_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  QMN_PIDS=()
  if [ "${QMN_KEEP:-0}" = 1 ]; then
    echo "netns_lib: QMN_KEEP=1: namespaces ${QMN_PREFIX}* kept (logs in $QMN_DIR); the next run" \
      "removes them, or: for n in \$(ip netns list | awk '/^${QMN_PREFIX}/{print \$1}'); do" \
      "ip netns del \$n; done" >&2
    QMN_DIR=""
    return 0
  fi
  for ((i = ${#QMN_CREATED[@]} - 1; i >= 0; i--)); do
    ns="${QMN_CREATED[$i]}"
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  QMN_CREATED=()
  rm -rf "$QMN_DIR"
  QMN_DIR=""
}

netns_dump() {
  local name ns f
  echo "---- netns_lib diagnostics (prefix $QMN_PREFIX) ----"
  netns_summary
  for name in "${!QMN_TYPE[@]}"; do
    [ "${QMN_TYPE[$name]}" = router ] || continue
    ns="${QMN_NS[$name]}"
    echo "## $name ($ns): nft ruleset with counters"
    ip netns exec "$ns" nft list ruleset 2>&1
    echo "## $name: addresses and routes"
    ip -n "$ns" -br addr 2>&1
    ip -n "$ns" route 2>&1
    ip -n "$ns" -6 route 2>&1
  done
  if [ -n "${QMN_NS[wan]:-}" ]; then
    echo "## wan: links and IPv6 routes"
    ip -n "${QMN_NS[wan]}" -br link 2>&1
    ip -n "${QMN_NS[wan]}" -6 route 2>&1
  fi
  for f in "$QMN_DIR"/*.log; do
    [ -f "$f" ] || continue
    echo "## $(basename "$f") (last 20 lines)"
    tail -n 20 "$f"
  done
  echo "---- end of diagnostics ----"
}

# Writes a sysctl inside a namespace (per-namespace /proc/sys/net; no procps needed).
_qmn_sysctl() {
  local ns="$1" key="$2" value="$3" path
  path="/proc/sys/${key//.//}"
  ip netns exec "$ns" sh -c "[ ! -e $path ] || echo $value > $path" ||
    _qmn_die "sysctl $key=$value in $ns failed"
}

# Creates namespace "${QMN_PREFIX}NAME" with loopback up and quiet, deterministic IPv6.
_qmn_new_ns() {
  local name="$1" role="$2" ns="${QMN_PREFIX}$1"
  if [ -n "${QMN_NS[$name]:-}" ]; then _qmn_die "name $name is already used"; fi
  _x ip netns add "$ns"
  QMN_CREATED+=("$ns")
  QMN_NS[$name]="$ns"
  QMN_TYPE[$name]="$role"
  _x ip -n "$ns" link set lo up
  local k
  for k in all default; do
    _qmn_sysctl "$ns" "net.ipv6.conf.$k.accept_dad" 0
    _qmn_sysctl "$ns" "net.ipv6.conf.$k.accept_ra" 0
    _qmn_sysctl "$ns" "net.ipv6.conf.$k.accept_redirects" 0
    _qmn_sysctl "$ns" "net.ipv4.conf.$k.rp_filter" 0
    _qmn_sysctl "$ns" "net.ipv4.conf.$k.accept_redirects" 0
  done
  # Bridged frames stay layer 2 (br_netfilter would otherwise pass them through nftables' ip hooks).
  _qmn_sysctl "$ns" net.bridge.bridge-nf-call-iptables 0
  _qmn_sysctl "$ns" net.bridge.bridge-nf-call-ip6tables 0
  _qmn_sysctl "$ns" net.bridge.bridge-nf-call-arptables 0
}

# Connects namespace of NAME to the public bridge through a veth named IFNAME on its side.
_qmn_attach_wan() {
  local name="$1" ifname="$2" wan="${QMN_NS[wan]}" port
  port="p$(( ${#QMN_CREATED[@]} ))"
  _x ip -n "$wan" link add "$port" type veth peer name "$ifname" netns "${QMN_NS[$name]}"
  _x ip -n "$wan" link set "$port" master br0 up
  _x ip -n "${QMN_NS[$name]}" link set "$ifname" up
}

netns_setup() {
  if [ -n "$QMN_DIR" ]; then return 0; fi
  _qmn_clean_stale
  # Keep a trap the test script set before (e.g. tests/integration/lib.sh's cleanup): run it after.
  local previous words=()
  previous="$(trap -p EXIT)"
  if [ -n "$previous" ]; then
    eval "words=($previous)" # trap -- 'command' EXIT
    QMN_PREV_EXIT="${words[2]}"
  fi
  trap _qmn_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  QMN_DIR="$(mktemp -d /tmp/qmn.XXXXXX)"
  step "setup: public segment 198.18.0.0/16 + fd00:18::/64 in ${QMN_PREFIX}wan (logs $QMN_DIR)"
  _qmn_new_ns wan wan
  local wan="${QMN_NS[wan]}"
  _x ip -n "$wan" link add br0 type bridge
  _x ip -n "$wan" link set br0 up
  _x ip -n "$wan" addr add 198.18.0.1/16 dev br0
  _x ip -n "$wan" -6 addr add fd00:18::1/64 dev br0 nodad
  # The "ISP core": routes the IPv6 prefixes of fw6 homes (IPv4 is one flat /16).
  _qmn_sysctl "$wan" net.ipv4.ip_forward 1
  _qmn_sysctl "$wan" net.ipv6.conf.all.forwarding 1
  QMN_IP4[wan]=198.18.0.1
  QMN_PUB4[wan]=198.18.0.1
  QMN_IP6[wan]=fd00:18::1
  QMN_PUB6[wan]=fd00:18::1
}

# A host with a public IPv4 and IPv6 address on the segment: 198.18.<net>.<k>, fd00:18::<net>:<k>.
_qmn_public_host() {
  local name="$1" role="$2" net="$3" k="$4" ns
  _qmn_new_ns "$name" "$role"
  ns="${QMN_NS[$name]}"
  _qmn_attach_wan "$name" eth0
  _x ip -n "$ns" addr add "198.18.$net.$k/16" dev eth0
  _x ip -n "$ns" -6 addr add "fd00:18::$net:$k/64" dev eth0 nodad
  _x ip -n "$ns" route add default via 198.18.0.1
  _x ip -n "$ns" -6 route add default via fd00:18::1
  QMN_IP4[$name]="198.18.$net.$k"
  QMN_PUB4[$name]="198.18.$net.$k"
  QMN_IP6[$name]="fd00:18::$net:$k"
  QMN_PUB6[$name]="fd00:18::$net:$k"
}

public() {
  local name="$1"
  [ -n "$name" ] || _qmn_die "usage: public NAME"
  netns_setup
  QMN_NPUB=$((QMN_NPUB + 1))
  ((QMN_NPUB < 255)) || _qmn_die "too many public hosts"
  _qmn_public_host "$name" public 1 "$QMN_NPUB"
  step "public $name: ${QMN_IP4[$name]} [${QMN_IP6[$name]}]"
}

home() {
  local name="$1" type="$2"
  if [ -z "$name" ] || [ -z "$type" ]; then _qmn_die "usage: home NAME open|cone|symmetric|fw6"; fi
  netns_setup
  case "$type" in
  open)
    QMN_NOPEN=$((QMN_NOPEN + 1))
    ((QMN_NOPEN < 255)) || _qmn_die "too many open homes"
    _qmn_public_host "$name" open 2 "$QMN_NOPEN"
    step "home $name open: ${QMN_IP4[$name]} [${QMN_IP6[$name]}] (no NAT)"
    return 0
    ;;
  cone | symmetric | fw6) ;;
  *) _qmn_die "home $name: unknown type '$type' (open, cone, symmetric, fw6)" ;;
  esac
  QMN_NHOMES=$((QMN_NHOMES + 1))
  ((QMN_NHOMES < 255)) || _qmn_die "too many homes"
  local h="$QMN_NHOMES" router="$name-r" rns
  _qmn_new_ns "$router" router
  rns="${QMN_NS[$router]}"
  QMN_HOME_INDEX[$name]="$h"
  QMN_LAN_NEXT[$name]=2
  _qmn_attach_wan "$router" wan0
  _x ip -n "$rns" link add lan0 type bridge
  _x ip -n "$rns" link set lan0 up
  if [ "$type" = fw6 ]; then
    _x ip -n "$rns" -6 addr add "fd00:18::3:$h/64" dev wan0 nodad
    _x ip -n "$rns" -6 addr add "fd10:$h::1/64" dev lan0 nodad
    _x ip -n "$rns" -6 route add default via fd00:18::1
    _qmn_sysctl "$rns" net.ipv6.conf.all.forwarding 1
    _x ip -n "${QMN_NS[wan]}" -6 route add "fd10:$h::/64" via "fd00:18::3:$h"
    QMN_IP6[$router]="fd00:18::3:$h"
    QMN_PUB6[$router]="fd00:18::3:$h"
    # A stateful firewall, no NAT: replies and related ICMPv6 in, nothing unsolicited.
    _x ip netns exec "$rns" nft -f - <<EOF
table inet qmesh {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan0" ct state established,related counter accept
    iifname "wan0" meta l4proto ipv6-icmp icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
    iifname "wan0" counter drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "wan0" ct state established,related counter accept
    iifname "wan0" counter drop
  }
}
EOF
  else
    _x ip -n "$rns" addr add "198.18.3.$h/16" dev wan0
    _x ip -n "$rns" addr add "10.$h.0.1/24" dev lan0
    _x ip -n "$rns" route add default via 198.18.0.1
    _qmn_sysctl "$rns" net.ipv4.ip_forward 1
    QMN_IP4[$router]="198.18.3.$h"
    QMN_PUB4[$router]="198.18.3.$h"
    local masq="masquerade persistent"
    if [ "$type" = symmetric ]; then masq="masquerade random,fully-random"; fi
    # cone: Linux keeps the source port when it is free and "persistent" keeps the address: one
    # mapping for every destination (endpoint-independent mapping). symmetric: a random port per
    # destination. Both filter inbound by conntrack (address and port dependent), and the input
    # chain drops unsolicited datagrams silently, so no conntrack entry is left for them (one would
    # otherwise make the next outgoing mapping pick another port). No hairpinning.
    _x ip netns exec "$rns" nft -f - <<EOF
table inet qmesh {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan0" ct state established,related counter accept
    iifname "wan0" counter drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "wan0" ct state established,related counter accept
    iifname "wan0" counter drop
  }
}
table ip qmesh_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan0" counter $masq
  }
}
EOF
  fi
  QMN_ROUTER[$name]="$router"
  step "home $name $type: router $router (${QMN_PUB4[$router]:-${QMN_PUB6[$router]}})"
  _qmn_lan_host "$name" "$name" "$type"
}

_qmn_lan_host() {
  local home="$1" name="$2" type="$3" h="${QMN_HOME_INDEX[$1]}" router="${QMN_ROUTER[$1]}"
  local k="${QMN_LAN_NEXT[$home]}" ns rns="${QMN_NS[${QMN_ROUTER[$1]}]}"
  ((k < 255)) || _qmn_die "too many hosts in home $home"
  QMN_LAN_NEXT[$home]=$((k + 1))
  _qmn_new_ns "$name" "$type"
  ns="${QMN_NS[$name]}"
  QMN_ROUTER[$name]="$router"
  _x ip -n "$rns" link add "h$k" type veth peer name eth0 netns "$ns"
  _x ip -n "$rns" link set "h$k" master lan0 up
  _x ip -n "$ns" link set eth0 up
  if [ "$type" = fw6 ]; then
    _x ip -n "$ns" -6 addr add "fd10:$h::$k/64" dev eth0 nodad
    _x ip -n "$ns" -6 route add default via "fd10:$h::1"
    QMN_IP6[$name]="fd10:$h::$k"
    QMN_PUB6[$name]="fd10:$h::$k"
  else
    _x ip -n "$ns" addr add "10.$h.0.$k/24" dev eth0
    _x ip -n "$ns" route add default via "10.$h.0.1"
    QMN_IP4[$name]="10.$h.0.$k"
    QMN_PUB4[$name]="${QMN_PUB4[$router]}"
  fi
  step "host $name in home $home: $(addrs "$name")"
}

home_host() {
  local home="$1" name="$2"
  if [ -z "$home" ] || [ -z "$name" ]; then _qmn_die "usage: home_host HOME NAME"; fi
  [ -n "${QMN_HOME_INDEX[$home]:-}" ] || _qmn_die "home_host: $home is not a NAT or fw6 home"
  _qmn_lan_host "$home" "$name" "${QMN_TYPE[$home]}"
}

add_loss() {
  local router="$1" pct="$2"
  if ! [[ "$pct" =~ ^[0-9]+$ ]] || ((pct > 100)); then
    _qmn_die "usage: add_loss HOME|ROUTER PCT (0-100)"
  fi
  if [ "${QMN_TYPE[$router]:-}" != router ]; then router="${QMN_ROUTER[$router]:-}"; fi
  [ -n "$router" ] || _qmn_die "add_loss: $1 has no router (open hosts have none)"
  _x ip netns exec "${QMN_NS[$router]}" nft insert rule inet qmesh forward \
    meta l4proto udp numgen random mod 100 '<' "$pct" counter drop
  step "loss: $router drops $pct% of forwarded UDP"
}

ns_of() {
  [ -n "${QMN_NS[$1]:-}" ] || _qmn_die "no host named '$1'"
  echo "${QMN_NS[$1]}"
}
ip4() { echo "${QMN_IP4[$1]:-}"; }
ip6() { echo "${QMN_IP6[$1]:-}"; }
pub4() { echo "${QMN_PUB4[$1]:-}"; }
pub6() { echo "${QMN_PUB6[$1]:-}"; }

addrs() {
  local n="$1"
  echo "$n type=${QMN_TYPE[$n]:-?} ns=${QMN_NS[$n]:-?} ip4=${QMN_IP4[$n]:--} pub4=${QMN_PUB4[$n]:--}" \
    "ip6=${QMN_IP6[$n]:--} router=${QMN_ROUTER[$n]:--}"
}

netns_summary() {
  local n
  for n in $(printf '%s\n' "${!QMN_NS[@]}" | sort); do addrs "$n"; done
}

in_ns() {
  local ns
  ns="$(ns_of "$1")" || exit 1
  shift
  ip netns exec "$ns" "$@"
}

bg_ns() {
  local ns log="$2"
  ns="$(ns_of "$1")" || exit 1
  shift 2
  ip netns exec "$ns" "$@" >"$log" 2>&1 &
  BG_PID=$!
  QMN_PIDS+=("$BG_PID")
}

bg_stop() {
  kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}

# Waits up to SECONDS for a line matching REGEX in FILE.
wait_for_line() {
  local file="$1" regex="$2" seconds="$3" i
  for ((i = 0; i < seconds * 20; i++)); do
    grep -q -E "$regex" "$file" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# The first (json_field) or every (json_fields) value of KEY in a one-line JSON object from
# nat_probe (values never hold ',' or '}').
json_fields() { grep -o "\"$2\":[^,}]*" <<<"$1" | cut -d: -f2- | tr -d '"'; }
json_field() { json_fields "$1" "$2" | head -n 1; }

# Results of a test script: pass/fail NAME DETAIL count and print; summary keeps one line each.
passed=0
failures=0
summary=()
pass() { passed=$((passed + 1)); echo "PASS $1: $2"; summary+=("$1: $2"); }
fail() { failures=$((failures + 1)); echo "FAIL $1: $2"; summary+=("$1: FAILED"); }
