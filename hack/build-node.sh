#!/usr/bin/env bash
# Build the node components of the one-node test cluster from published Go modules:
#   kubelet, kube-scheduler, kube-proxy  (hack/controlplane/k8s, the control plane's wrapper module)
#   coredns                              (hack/controlplane/coredns)
#   training-operator.v1                 (hack/controlplane/kubeflow: the module whose PyTorchJob CRD tests use)
# Binaries land in a version-keyed cache outside the clone and are reused when present; the Go build cache is
# shared with hack/build-controlplane.sh, so after it this takes a minute or two. Prints the bin dir last.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.36.3}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}
KUBEFLOW_VERSION=${KUBEFLOW_VERSION:-v1.9.4}
here=$(cd "$(dirname "$0")" && pwd)
bin=${KUBETUNE_CACHE:-$HOME/.cache/kubetune}/node/k8s-${K8S_VERSION}-coredns-${COREDNS_VERSION}-kubeflow-${KUBEFLOW_VERSION}/bin
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath
mkdir -p "$bin"

if [ ! -x "$bin/kubelet" ] || [ ! -x "$bin/kube-scheduler" ] || [ ! -x "$bin/kube-proxy" ]; then
  echo ">> building kubelet, kube-scheduler, kube-proxy ${K8S_VERSION} into $bin" >&2
  ver=""; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ver="$ver -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (cd "$here/controlplane/k8s" && go build -pgo=off -ldflags "-s -w$ver" -o "$bin/" \
     k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy)
fi
if [ ! -x "$bin/coredns" ]; then
  echo ">> building coredns ${COREDNS_VERSION}" >&2
  (cd "$here/controlplane/coredns" && go build -ldflags "-s -w" -o "$bin/coredns" github.com/coredns/coredns)
fi
if [ ! -x "$bin/training-operator.v1" ]; then
  echo ">> building training-operator.v1 ${KUBEFLOW_VERSION}" >&2
  (cd "$here/controlplane/kubeflow" && go build -ldflags "-s -w" -o "$bin/training-operator.v1" \
     github.com/kubeflow/training-operator/cmd/training-operator.v1)
fi
echo "$bin"
