#!/usr/bin/env bash
# A one-node Kubernetes cluster inside a network namespace of its own, for the end-to-end tests and
# for trying the chart: etcd, kube-apiserver, kube-controller-manager (all its default controllers),
# kube-scheduler, kubelet and kube-proxy (iptables), built from the Kubernetes release that
# tests/control-plane/go.mod pins (`make node-binaries`), with Debian's containerd, runc and CNI
# plugins. Modelled on hack/local-up-cluster.sh of kubernetes/kubernetes, which runs the same parts
# as processes.
#
#   hack/node/up.sh                 start the node, open a shell inside it (KUBECONFIG set); leave
#                                   the shell to tear it all down
#   hack/node/up.sh -- CMD ARGS...  start the node, run CMD inside it, tear down, exit with CMD's status
#                                   (Ctrl-C or SIGTERM tear down at once)
#
# The network: the namespace `ppio-node` holds everything. Its bridge cni0 (10.88.0.0/16) carries
# the pods; the node's own address, 10.88.0.1 (the bridge's), is where the API server, the kubelet
# and anything the tests serve (the PPIO simulator) listen. Services take 10.96.0.0/16. The namespace
# has no route out: nothing inside can reach any other address, and nothing outside sees it.
#
# What the node writes stays in the node's directory (NODE_DIR, default /var/lib/ppio-node): inside
# the namespace, the host paths containerd, the CNI plugins and the kubelet write to whatever their
# configuration says (/run/containerd, /var/lib/cni, /var/lib/kubelet, /var/log/pods,
# /var/log/containers, /opt/containerd) are directories of NODE_DIR mounted over them. The kernel
# settings the kubelet changes for the whole host (vm.overcommit_memory, kernel.panic, ...) are saved
# first and put back.
#
# Teardown, on exit, Ctrl-C, SIGTERM or failure: every process of the node and every container is in
# the cgroup /ppio-node and is killed with it; their mounts live in the mount namespace `ip netns exec`
# made, which goes with its last process; the network namespace (with its bridge, veths and iptables
# rules) is deleted; the kernel settings are restored; NODE_DIR is removed. A run killed outright is
# cleaned up by the next one.
#
# Needs root. Installs containerd, runc, containernetworking-plugins and iptables with apt-get when
# they are missing.
set -euo pipefail
# The whole script is one block, read before it runs: editing the file cannot change a running node.
{

root=$(cd "$(dirname "$0")/../.." && pwd)
netns=ppio-node
node_name=ppio-node
node_dir=${NODE_DIR:-/var/lib/ppio-node}
bin=$root/target/node
image_dir=$root/target/image
cgroup_name=ppio-node

# The host paths the node's parts write to whatever their configuration says; inside the namespace,
# directories of NODE_DIR are mounted over them.
host_paths=(/run/containerd /var/lib/cni /var/lib/kubelet /var/log/pods /var/log/containers /opt/containerd)
# The host-wide kernel settings the kubelet sets (container_manager_linux.go, setupKernelTunables).
kernel_settings=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# What the host had before: the settings, and which of host_paths did not exist (so teardown removes
# the empty mount points it made). Outside NODE_DIR, so a run killed outright still restores them.
saved_state=/run/ppio-node.saved

node_ip=10.88.0.1
pod_cidr=10.88.0.0/16
service_cidr=10.96.0.0/16
kubernetes_service_ip=10.96.0.1
api_port=6443

log() { echo "node: $*" >&2; }
die() { log "$*"; exit 1; }

# --- Inside the namespace: start every part, then run the command. --------------------------------
if [ "${1:-}" = --inside ]; then
  shift
  [ "${1:-}" = -- ] && shift
  pki=$node_dir/pki
  logs=$node_dir/logs
  export KUBECONFIG=$pki/admin.kubeconfig
  export PATH=$bin:$root/target/tools:$PATH

  # `ip netns exec` mounted a sysfs of the namespace on /sys (so /sys/class/net shows its devices),
  # which hides the cgroup file systems: mount the host's hierarchies again, as they were.
  if [ -n "${NODE_CGROUP_ROOT_TMPFS:-}" ]; then
    mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
  fi
  while read -r fstype target options; do
    [ -n "$fstype" ] || continue
    mkdir -p "$target"
    mount -t "$fstype" -o "$options" "$fstype" "$target"
  done <<<"$NODE_CGROUP_MOUNTS"
  for path in "${host_paths[@]}"; do
    mkdir -p "$node_dir/host$path"
    mount --bind "$node_dir/host$path" "$path"
  done

  # Everything started from here on is in the node's cgroup, so teardown finds it all.
  for controller in /sys/fs/cgroup/*/; do
    [ -e "$controller/cgroup.procs" ] || continue
    mkdir -p "$controller$cgroup_name/system"
    if [ -e "$controller/cpuset.cpus" ]; then
      cat "$controller/cpuset.cpus" > "$controller$cgroup_name/cpuset.cpus"
      cat "$controller/cpuset.mems" > "$controller$cgroup_name/cpuset.mems"
      cat "$controller/cpuset.cpus" > "$controller$cgroup_name/system/cpuset.cpus"
      cat "$controller/cpuset.mems" > "$controller$cgroup_name/system/cpuset.mems"
    fi
    echo $$ > "$controller$cgroup_name/system/cgroup.procs"
  done

  ip link set lo up
  # The pod bridge carries the node's address: the CNI bridge plugin finds it already there.
  ip link add cni0 type bridge
  ip addr add "$node_ip/${pod_cidr#*/}" dev cni0
  ip link set cni0 up
  # Local traffic to a ClusterIP needs a route before kube-proxy's DNAT applies; there is no other.
  ip route add "$service_cidr" dev cni0
  sysctl -qw net.ipv4.ip_forward=1
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
  sysctl -qw net.bridge.bridge-nf-call-ip6tables=1

  start() { # start NAME COMMAND...: in the background, logging to logs/NAME.log
    local name=$1
    shift
    "$@" >"$logs/$name.log" 2>&1 &
    echo $! > "$node_dir/$name.pid"
    started+=("$name")
  }
  started=()
  alive() { kill -0 "$(cat "$node_dir/$1.pid")" 2>/dev/null || { log "$1 exited:"; tail -n 30 "$logs/$1.log" >&2; return 1; }; }
  wait_until() { # wait_until WHAT SECONDS COMMAND...: fails at once when a part has exited
    local what=$1 deadline=$((SECONDS + $2)) part
    shift 2
    while [ $SECONDS -lt $deadline ]; do
      "$@" >/dev/null 2>&1 && return 0
      for part in "${started[@]}"; do alive "$part" || return 1; done
      sleep 0.2
    done
    log "timed out after $2s waiting for $what; the logs are in $logs"
    return 1
  }

  start containerd containerd --config "$node_dir/containerd.toml"
  wait_until containerd 30 ctr --address "$node_dir/containerd/containerd.sock" version
  for archive in "$image_dir"/pause.oci.tar "$image_dir"/ppio-gpu-operator.oci.tar; do
    ctr --address "$node_dir/containerd/containerd.sock" -n k8s.io images import --no-unpack=false "$archive" >/dev/null
  done

  start etcd etcd --name "$node_name" --data-dir "$node_dir/etcd" --unsafe-no-fsync \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$node_name=http://127.0.0.1:2380" --log-level error
  wait_until etcd 30 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2379'

  start kube-apiserver kube-apiserver \
    --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --advertise-address="$node_ip" --secure-port="$api_port" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.key" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range="$service_cidr" --allow-privileged=true \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --cert-dir="$pki" --profiling=false --v=1
  wait_until kube-apiserver 120 kubectl get --raw /readyz

  start kube-controller-manager kube-controller-manager \
    --kubeconfig="$pki/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$pki/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$pki/kube-controller-manager.kubeconfig" \
    --use-service-account-credentials \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --service-cluster-ip-range="$service_cidr" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=10257 --cert-dir="$pki/kcm" \
    --profiling=false --v=1
  start kube-scheduler kube-scheduler \
    --kubeconfig="$pki/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$pki/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$pki/kube-scheduler.kubeconfig" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=10259 --profiling=false --v=1
  start kubelet kubelet --config="$node_dir/kubelet.yaml" \
    --kubeconfig="$pki/kubelet.kubeconfig" --root-dir="$node_dir/kubelet" \
    --cert-dir="$node_dir/kubelet/pki" --hostname-override="$node_name" --node-ip="$node_ip" --v=1
  wait_until "the node to be Ready" 120 \
    bash -c "kubectl get node $node_name -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  start kube-proxy kube-proxy --config="$node_dir/kube-proxy.yaml" --v=1
  # kube-proxy is ready when the kubernetes Service has its rules, not when its health port opens.
  wait_until "kube-proxy's rules for the kubernetes Service" 60 \
    bash -c "iptables -t nat -S KUBE-SERVICES | grep -q -- '-d $kubernetes_service_ip/32'"
  # NetworkPolicy, enforced by kube-router's network-policy controller alone (its routing and service
  # proxy stay off: the bridge routes and kube-proxy proxies), with read access to what it watches.
  kubectl apply --server-side --field-manager=ppio-node -f - >/dev/null <<RBAC
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "ppio-node:kube-router"}
rules:
  - apiGroups: [""]
    resources: [pods, namespaces, nodes, services, endpoints]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "ppio-node:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "ppio-node:kube-router"}
subjects: [{kind: User, name: "system:kube-router", apiGroup: rbac.authorization.k8s.io}]
RBAC
  start kube-router kube-router --kubeconfig="$pki/kube-router.kubeconfig" --hostname-override="$node_name" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --service-cluster-ip-range="$service_cidr" --health-port=20244 --metrics-port=0 --v=1
  wait_until "kube-router" 60 bash -c 'exec 3<>/dev/tcp/127.0.0.1/20244'
  # Pods get their ServiceAccount token and the cluster's CA from these.
  wait_until "the default ServiceAccount" 60 kubectl -n default get serviceaccount default
  wait_until "kube-root-ca.crt" 60 kubectl -n default get configmap kube-root-ca.crt
  for part in "${started[@]}"; do alive "$part"; done
  log "ready: node $node_name at $node_ip, API server https://$node_ip:$api_port, logs in $logs"
  log "KUBECONFIG=$KUBECONFIG (inside the namespace: ip netns exec $netns ...)"

  if [ $# -eq 0 ]; then
    PS1="[ppio-node] \w \$ " bash --norc -i || true
    exit 0
  fi
  "$@"
  exit
fi

# --- Outside: prepare, enter the namespace, and tear down. ----------------------------------------
[ "$(id -u)" = 0 ] || die "the node needs root (network namespaces, cgroups, containerd)"
[ "${1:-}" = -- ] && shift
[ -f /sys/fs/cgroup/pids/cgroup.procs ] \
  || die "the node needs the cgroup v1 hierarchies (with pids) that this machine kind mounts under /sys/fs/cgroup"

exec 9>/run/ppio-node.lock
flock -n 9 || die "another node is running (lock /run/ppio-node.lock)"

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
command -v ipset >/dev/null || missing+=(ipset)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing: make node-binaries builds it"
done
[ -x "$root/target/tools/kube-router" ] || die "$root/target/tools/kube-router is missing: make kube-router builds it"
for archive in pause.oci.tar ppio-gpu-operator.oci.tar; do
  [ -f "$image_dir/$archive" ] || die "$image_dir/$archive is missing: make image builds it"
done
# OPERATOR_IMAGE and PAUSE_IMAGE, for containerd's configuration and for the command run inside.
set -a
# shellcheck source=/dev/null
. "$image_dir/images.env"
set +a

kill_node() { # every process left in the node's cgroup tree or in its network namespace
  local pids
  for _ in $(seq 50); do
    pids=$({ find /sys/fs/cgroup/pids/$cgroup_name -name cgroup.procs -exec cat {} + 2>/dev/null
      ip netns pids "$netns" 2>/dev/null; } | sort -u)
    [ -z "$pids" ] && return 0
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  log "processes of the node still alive: $pids"
}
save_host() {
  [ -f "$saved_state" ] && return 0 # an earlier run's, not yet restored: the host's own values
  {
    for setting in "${kernel_settings[@]}"; do echo "sysctl $setting $(sysctl -n "$setting")"; done
    for path in "${host_paths[@]}"; do [ -e "$path" ] || echo "created $path"; done
  } > "$saved_state.tmp"
  mv "$saved_state.tmp" "$saved_state"
  for path in "${host_paths[@]}"; do mkdir -p "$path"; done
}
restore_host() {
  [ -f "$saved_state" ] || return 0
  local kind name value
  while read -r kind name value; do
    case "$kind" in
      sysctl) sysctl -qw "$name=$value" || log "cannot restore $name=$value" ;;
      created) rmdir "$name" 2>/dev/null || true ;;
    esac
  done < "$saved_state"
  rm -f "$saved_state"
}
teardown() {
  trap - EXIT INT TERM
  local status=${1:-$?}
  kill_node
  for controller in /sys/fs/cgroup/*/; do
    if [ -d "$controller$cgroup_name" ]; then
      find "$controller$cgroup_name" -depth -type d -exec rmdir {} + 2>/dev/null \
        || log "cannot remove the cgroup $controller$cgroup_name"
    fi
  done
  ip netns delete "$netns" 2>/dev/null || true
  restore_host
  if [ -d "$node_dir" ]; then
    # Keep the logs of a failed run beside the build, for whoever reads it next.
    if [ "$status" != 0 ] && [ -d "$node_dir/logs" ]; then
      rm -rf "$root/target/node-logs" && cp -r "$node_dir/logs" "$root/target/node-logs"
      log "logs of this run: $root/target/node-logs"
    fi
    rm -rf --one-file-system "$node_dir" || log "cannot remove $node_dir"
  fi
  exit "$status"
}
# A node left by a run that was killed outright.
if ip netns list | grep -qw "$netns" || [ -d "$node_dir" ] || [ -d /sys/fs/cgroup/pids/$cgroup_name ]; then
  log "removing what an earlier run left"
  (teardown 0) || true
fi
trap 'teardown $?' EXIT
trap 'teardown 130' INT
trap 'teardown 143' TERM
save_host

mkdir -p "$node_dir"/{logs,pki,cni,kubelet} "$node_dir/pki/kcm"
chmod 0700 "$node_dir"

# --- Certificates, tokens and kubeconfigs. --------------------------------------------------------
pki=$node_dir/pki
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 2 \
  -subj "/CN=ppio-node-ca"
sign() { # sign NAME SUBJECT [SAN]
  local name=$1 subject=$2 san=${3:-}
  openssl_quiet req -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subject"
  local ext=$pki/$name.ext
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth"; echo "subjectAltName=$san"
    else echo "extendedKeyUsage=clientAuth"; fi; } > "$ext"
  openssl_quiet x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/$name.crt" -days 2 -extfile "$ext"
}
sign apiserver "/CN=kube-apiserver" \
  "IP:$node_ip,IP:$kubernetes_service_ip,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
openssl_quiet genrsa -out "$pki/sa.key" 2048

# Static tokens: one identity per component, as kubeadm gives each its own certificate.
token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
: > "$pki/tokens.csv"
kubeconfig() { # kubeconfig NAME USER GROUPS
  local t
  t=$(token)
  echo "$t,$2,$2,\"$3\"" >> "$pki/tokens.csv"
  cat > "$pki/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $node_name
  cluster:
    server: https://$node_ip:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    token: $t
contexts:
- name: $node_name
  context: {cluster: $node_name, user: $2}
current-context: $node_name
EOF
}
kubeconfig admin admin system:masters
kubeconfig kubelet "system:node:$node_name" system:nodes
kubeconfig kube-controller-manager system:kube-controller-manager ""
kubeconfig kube-scheduler system:kube-scheduler ""
kubeconfig kube-proxy system:kube-proxy ""
kubeconfig kube-router system:kube-router ""
find "$pki" -maxdepth 1 -type f -exec chmod 0600 {} +

# --- containerd, CNI, kubelet and kube-proxy configuration. ---------------------------------------
cat > "$node_dir/containerd.toml" <<EOF
version = 2
root = "$node_dir/containerd/root"
state = "$node_dir/containerd/state"
[grpc]
  address = "$node_dir/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Pod network namespaces are mounted in the node's own directory, not in /run/netns.
  netns_mounts_under_state_dir = true
  # CI's machine kind does not let root lower an oom_score_adj (kubelet asks -998 for sandboxes): keep
  # every container's at least containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_dir/cni"
EOF
cat > "$node_dir/cni/10-ppio-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "ppio-node",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$node_dir/cni-ipam",
        "ranges": [[{ "subnet": "$pod_cidr", "rangeStart": "10.88.1.1", "rangeEnd": "10.88.254.254", "gateway": "$node_ip" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
# No cluster DNS: pods get an empty resolver configuration, so a name lookup fails at once.
echo "options ndots:1" > "$node_dir/resolv.conf"
cat > "$node_dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$node_dir/containerd/containerd.sock
# CI's machine kind has cgroup v1; containerd 1.6 does not report a cgroup driver, so kubelet uses its own.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_name
cgroupsPerQOS: true
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: $node_dir/resolv.conf
# The imported images are the only copies: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
serializeImagePulls: false
EOF
cat > "$node_dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $pki/kube-proxy.kubeconfig}
hostnameOverride: $node_name
mode: iptables
clusterCIDR: $pod_cidr
bindAddress: $node_ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# The namespace's conntrack table is the host's: leave its sysctls alone.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF

# The host's cgroup mounts, for the namespace's own view of /sys (see --inside).
NODE_CGROUP_MOUNTS=$(awk '$2 ~ "^/sys/fs/cgroup/" && ($3 == "cgroup" || $3 == "cgroup2") {
  n = split($4, o, ","); opts = ""
  for (i = 1; i <= n; i++) if (o[i] != "rw" && o[i] != "relatime") opts = opts (opts == "" ? "" : ",") o[i]
  print $3, $2, (opts == "" ? "defaults" : opts) }' /proc/self/mounts)
NODE_CGROUP_ROOT_TMPFS=$(awk '$2 == "/sys/fs/cgroup" && $3 == "tmpfs" { print "yes" }' /proc/self/mounts)
export NODE_CGROUP_MOUNTS NODE_CGROUP_ROOT_TMPFS
export CONTAINERD_ADDRESS=$node_dir/containerd/containerd.sock

ip netns add "$netns"
log "starting in network namespace $netns"
set +e
if [ $# -eq 0 ]; then
  # The shell: Ctrl-C is for the commands typed in it; leaving it tears down.
  trap '' INT
  ip netns exec "$netns" "$0" --inside 9>&-
  status=$?
else
  # In the background, so that a signal to this script tears down at once, not after the command.
  ip netns exec "$netns" "$0" --inside "$@" 9>&- &
  wait $!
  status=$?
fi
set -e
teardown "$status"
}
