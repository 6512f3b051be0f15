#!/usr/bin/env bash
# Runs the operator locally on embedded defaults: the test control plane (real kube-apiserver), the
# PPIO simulator with sample instances, and the operator; applies an example Secret and view, prints
# what a user sees, then keeps everything running until Ctrl-C, when it stops all it started.
set -euo pipefail
cd "$(dirname "$0")/.."

demo_dir=$PWD/target/demo
rm -rf "$demo_dir"
mkdir -p "$demo_dir"
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "demo: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

# wait_for_line FILE PATTERN SECONDS: prints the first line of FILE matching PATTERN.
wait_for_line() {
  local file=$1 pattern=$2 seconds=$3
  for _ in $(seq $((seconds * 10))); do
    if line=$(grep -m1 "$pattern" "$file" 2>/dev/null); then echo "$line"; return 0; fi
    sleep 0.1
  done
  echo "demo: timed out waiting for '$pattern' in $file" >&2
  return 1
}

echo "demo: building (the first build takes a few minutes)"
make --no-print-directory control-plane
cargo build --quiet --locked --bins -p ppio-gpu-operator -p ppio-simulator

echo "demo: starting the control plane (etcd + kube-apiserver + garbage collector)"
target/control-plane/kube-control-plane --data-dir "$demo_dir/control-plane" \
  >"$demo_dir/control-plane.out" 2>"$demo_dir/control-plane.log" &
pids+=($!)
ready=$(wait_for_line "$demo_dir/control-plane.out" '^READY' 180)
export KUBECONFIG=${ready##*kubeconfig=}
KUBECONFIG=${KUBECONFIG%% *}

echo "demo: starting the PPIO simulator with 12 sample instances"
target/debug/ppio-simulator --listen 127.0.0.1:0 --api-key sk-demo-key --generate 12 \
  >"$demo_dir/simulator.out" 2>"$demo_dir/simulator.log" &
pids+=($!)
listening=$(wait_for_line "$demo_dir/simulator.out" '^LISTENING' 30)
ppio_url=${listening#LISTENING }

echo "demo: installing the CRDs"
kubectl apply --server-side -f crds/gpu.ppio.io.yaml >/dev/null
kubectl wait --for=condition=Established crd/gpuinstanceviews.gpu.ppio.io crd/gpuinstances.gpu.ppio.io --timeout=60s >/dev/null

echo "demo: starting the operator"
target/debug/ppio-gpu-operator run --allowed-endpoint "$ppio_url" --leader-election=false \
  --http-address 127.0.0.1:0 >"$demo_dir/operator.log" 2>&1 &
pids+=($!)

echo "demo: creating the Secret ppio-api-key and the view examples/demo-view.yaml (endpoint: the simulator)"
kubectl create secret generic ppio-api-key --from-literal=apiKey=sk-demo-key --dry-run=client -o yaml \
  | kubectl apply -f - >/dev/null
sed "s|^  endpoint: .*|  endpoint: $ppio_url|" examples/demo-view.yaml | kubectl apply -f - >/dev/null
kubectl wait --for=condition=Ready gpuinstanceview/demo --timeout=60s >/dev/null

echo
echo "\$ kubectl get gpuinstanceviews,gpuinstances"
kubectl get gpuinstanceviews,gpuinstances

# A remote instance stops with an error, and another one's prepaid term ends in two days without
# auto-renew: both through the simulator's control API, as PPIO would report them.
stop_id=$(kubectl get gpui -l gpu.ppio.io/status=running -o jsonpath='{.items[0].spec.instanceId}')
prepaid_id=$(kubectl get gpui -o jsonpath='{range .items[*]}{.spec.instanceId}{"\n"}{end}' \
  | grep -vx "$stop_id" | tail -n 1)
end_time=$(( $(date +%s) + 48 * 3600 ))
echo
echo "demo: instance $stop_id exits with error OOM; instance $prepaid_id becomes prepaid, ending in 48h without auto-renew"
curl -sf -X PATCH "$ppio_url/_simulator/instances/$stop_id" \
  -d '{"status":{"status":"exited","error":"OOM","message":"the container exceeded its memory limit"}}' >/dev/null
curl -sf -X PATCH "$ppio_url/_simulator/instances/$prepaid_id" \
  -d "{\"billing\":{\"mode\":\"prepaid\",\"prepaid\":{\"months\":1,\"end_time\":$end_time,\"auto_renew\":{\"enabled\":false,\"months\":1,\"status\":\"\"}}}}" >/dev/null
echo "demo: asking for a sync now (the view also syncs every 15s) and waiting for it"
kubectl annotate gpuview demo gpu.ppio.io/refresh-requested-at="$(date +%s)" --overwrite >/dev/null
for _ in $(seq 600); do
  if [[ -n $(kubectl get events --field-selector reason=Stopped -o name) \
     && -n $(kubectl get events --field-selector reason=ExpiringSoon -o name) ]]; then break; fi
  sleep 0.1
done
stopped=$(kubectl get gpui -l gpu.ppio.io/instance-id="$stop_id" -o name)
echo
echo "\$ kubectl describe $stopped | sed -n '/^Events:/,\$p'"
kubectl describe "$stopped" | sed -n '/^Events:/,$p'
echo
echo "\$ kubectl get events --field-selector involvedObject.kind=GpuInstance"
kubectl get events --field-selector involvedObject.kind=GpuInstance
echo
echo "\$ kubectl get gpui -l gpu.ppio.io/expiring-soon -o wide"
kubectl get gpui -l gpu.ppio.io/expiring-soon -o wide
echo
echo "\$ kubectl get gpui -o wide"
kubectl get gpui -o wide
echo
echo "\$ kubectl get gpuview demo -o wide"
kubectl get gpuview demo -o wide
echo
echo "\$ kubectl get gpuview demo -o jsonpath='{.status.cost}'"
kubectl get gpuview demo -o jsonpath='{.status.cost}'
echo
cat <<MSG

demo: running. In another shell:
  export KUBECONFIG=$KUBECONFIG
  kubectl get gpui -o wide
  kubectl get gpuview demo -o wide
  kubectl get gpui -l gpu.ppio.io/status=running
  kubectl get gpui -l gpu.ppio.io/expiring-soon
  kubectl get events --field-selector type=Warning
  curl -s -X PATCH $ppio_url/_simulator/instances/<id> -d '{"status":{"status":"exited"}}'
  kubectl annotate gpuview demo gpu.ppio.io/refresh-requested-at="\$(date +%s)" --overwrite
Logs are in $demo_dir/. Press Ctrl-C to stop everything.
MSG
wait "${pids[@]}"
