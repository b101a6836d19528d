#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager) and fetch the
# Kubeflow training-operator module (for its PyTorchJob CRD) from published Go modules.
# Binaries land in a version-keyed cache outside the clone and are reused when present.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KUBEFLOW_VERSION=${KUBEFLOW_VERSION:-v1.9.4}
here=$(cd "$(dirname "$0")" && pwd)
cache=${KUBETUNE_CACHE:-$HOME/.cache/kubetune}/controlplane/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}
bin=$cache/bin
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
mkdir -p "$bin"

if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ]; then
  echo ">> building kube-apiserver, kube-controller-manager ${K8S_VERSION} into $bin" >&2
  ver=""; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ver="$ver -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (cd "$here/controlplane/k8s" && go build -pgo=off -ldflags "-s -w$ver" -o "$bin/" \
     k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
fi
if [ ! -x "$bin/etcd" ]; then
  echo ">> building etcd ${ETCD_VERSION}" >&2
  (cd "$here/controlplane/etcd" && go build -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
fi
(cd "$here/controlplane/kubeflow" && go mod download github.com/kubeflow/training-operator)
crd=$(cd "$here/controlplane/kubeflow" && go list -m -f '{{.Dir}}' github.com/kubeflow/training-operator)/manifests/base/crds/kubeflow.org_pytorchjobs.yaml
test -f "$crd"
echo "$bin"
