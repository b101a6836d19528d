"""Pure renders of the one-node cluster's configuration files: no I/O, every path and port passed in.

Settings the development VMs need are marked "VM:" (cgroup v1 host, no negative oom_score_adj, no swap rule,
small disks); they are harmless on an ordinary Linux host.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.0.0.0/24"
CLUSTER_DOMAIN = "cluster.local"
BRIDGE = "kt0"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
CNI_BIN_DIR = "/usr/lib/cni"


@dataclass(frozen=True)
class Layout:
    """Where every piece of node state lives: one directory, plus containerd's image store kept between runs."""

    state: Path
    containerd_root: Path

    @property
    def containerd_socket(self) -> Path:
        return self.state / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.state / "pod-logs"

    @property
    def volumes(self) -> Path:
        """Host directories behind the local PersistentVolumes."""
        return self.state / "volumes"


def containerd_config(default_toml: str, layout: Layout) -> str:
    """`containerd config default` (1.6) with every path under the layout and the settings the node needs."""
    replacements = {
        r"^root = .*$": f'root = "{layout.containerd_root}"',
        r"^state = .*$": f'state = "{layout.state / "containerd" / "state"}"',
        r'address = "/run/containerd/containerd.sock"': f'address = "{layout.containerd_socket}"',
        r"sandbox_image = .*$": f'sandbox_image = "{PAUSE_IMAGE}"',
        r'bin_dir = "/opt/cni/bin"': f'bin_dir = "{CNI_BIN_DIR}"',
        r'conf_dir = "/etc/cni/net.d"': f'conf_dir = "{layout.cni_conf_dir}"',
        # VM: negative oom_score_adj is refused even to root; clamp the sandbox's -998 to containerd's own score.
        r"restrict_oom_score_adj = false": "restrict_oom_score_adj = true",
    }
    text = default_toml
    for pattern, value in replacements.items():
        text, count = re.subn(pattern, value, text, flags=re.MULTILINE)
        if count == 0:
            raise ValueError(f"containerd default config has no line matching {pattern!r}")
    return text


def cni_conflist(layout: Layout) -> str:
    """A bridge network with NAT to the outside and host-port mappings, addresses from the node's pod CIDR."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "kubetune-pods",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(layout.state / "cni" / "ipam"),
                      "ranges": [[{"subnet": POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2)


def kubelet_config(layout: Layout, pki: Path, *, port: int, healthz_port: int, dns_ip: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # VM: cgroup v1 host; kubelet 1.36 refuses v1 unless told
        "cgroupDriver": "cgroupfs",  # containerd 1.6 does not report its driver over CRI
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "client-ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "podCIDR": POD_CIDR,
        "clusterDNS": [dns_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        "podLogsDir": str(layout.pod_logs),
        "failSwapOn": False,
        "oomScoreAdj": 0,  # VM: see containerd's restrict_oom_score_adj
        # Small, shared disks: evict only when really full, and never garbage-collect the locally built images
        # (nothing could pull them back).
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "registerNode": True,
    }, sort_keys=False)


def kube_proxy_config(kubeconfig: Path, node_name: str, *, metrics_port: int, healthz_port: int) -> str:
    return yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "mode": "iptables",
        "clusterCIDR": CLUSTER_CIDR,
        "oomScoreAdj": 0,
        "conntrack": {"maxPerCore": 0},  # leave the host's conntrack table size alone
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
    }, sort_keys=False)


def corefile(dns_ip: str, kubeconfig: Path) -> str:
    """Cluster DNS for Service and pod names (headless Services give training ranks stable names)."""
    return (
        f".:53 {{\n"
        f"    bind {dns_ip}\n"
        f"    errors\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        f"        kubeconfig {kubeconfig}\n"
        f"        pods insecure\n"
        f"        fallthrough in-addr.arpa ip6.arpa\n"
        f"    }}\n"
        f"    forward . /etc/resolv.conf\n"
        f"    cache 30\n"
        f"}}\n"
    )


def local_storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "local", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    }


def local_pv(name: str, path: Path, node_name: str, size: str = "10Gi") -> dict[str, Any]:
    """A local PersistentVolume on the node's disk, in the `local` class."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"kubetune.io/test-volume": "true"}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "local",
            "local": {"path": str(path)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}]}]}},
        },
    }


SHIPPED_MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def operator_overlay(manifests: Path, operator_image: str, images: dict[str, str]) -> str:
    """A kustomization over manifests/ that runs the locally built images (never pulled: there is no registry).

    ``images`` maps an operator flag (``runtime-image``, ``vllm-image``) to its local image; every other argument
    of the shipped Deployment (its policy, the pods' uid) stays as shipped."""
    repo, tag = operator_image.rsplit(":", 1)
    shipped = yaml.safe_load((SHIPPED_MANIFESTS / "operator.yaml").read_text())
    args = [arg for arg in shipped["spec"]["template"]["spec"]["containers"][0]["args"]
            if arg.split("=", 1)[0].removeprefix("--") not in images]
    args += [f"--{flag}={image}" for flag, image in images.items()]
    args += ["--image-pull-policy=Never", "--resync=20"]
    patch = [
        {"op": "replace", "path": "/spec/template/spec/containers/0/args", "value": args},
        {"op": "add", "path": "/spec/template/spec/containers/0/imagePullPolicy", "value": "Never"},
    ]
    return yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [str(manifests)],
        "images": [{"name": "ghcr.io/kubetune/kubetune-operator", "newName": repo, "newTag": tag}],
        "patches": [{"target": {"kind": "Deployment", "name": "kubetune-operator"}, "patch": json.dumps(patch)}],
    }, sort_keys=False)
