"""A real one-node Kubernetes cluster from local processes: pods run, images come from local builds.

On top of the loopback plane (:mod:`tests.support.controlplane`) the node cluster has an apiserver that pods can
reach (node IP, the ``kubernetes`` Service), the Node and RBAC authorizers, kube-controller-manager with its
default controllers, kube-scheduler, containerd + runc with a CNI bridge, a kubelet, kube-proxy (iptables),
CoreDNS, the Kubeflow training-operator and local PersistentVolumes. The kubetune operator runs *in* the cluster
as its Deployment from manifests/, with the locally built images.

Binaries come from ``hack/build-controlplane.sh`` and ``hack/build-node.sh``, images from
``hack/build-images.sh``, Debian packages from ``hack/node-prereqs.sh``; :func:`prepare` runs all of them
(each is a no-op when its outputs are cached). All state lives in one directory, except containerd's image
store which is kept in the cache between runs. Components are stopped by PID.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import kubeconfig, nodeconfig
from tests.support.cluster import Cluster, kubectl_binary
from tests.support.controlplane import ROOT, Plane, _start_etcd
from tests.support.nodepki import write_node_pki
from tests.support.processes import Process, StartError, free_port, https_get, spawn, stop, wait_until

NODE_NAME = "kubetune-node"
NODE_STATE = "node.json"
OPERATOR_NAMESPACE = "kubetune-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=kubetune,app.kubernetes.io/component=operator"
KUBEFLOW_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # fixed in the training-operator's code


def cache_dir() -> Path:
    return Path(os.environ.get("KUBETUNE_CACHE", Path.home() / ".cache" / "kubetune"))


@dataclass(frozen=True)
class Artifacts:
    """What the setup scripts produced: binary directories and image references."""

    plane_bin: Path
    node_bin: Path
    images: dict[str, str]

    @property
    def operator_image(self) -> str:
        return self.images["OPERATOR_IMAGE"]

    @property
    def runtime_image(self) -> str:
        return self.images["RUNTIME_IMAGE"]


def _last_line(argv: list[str]) -> str:
    out = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT).stdout
    return out.strip().splitlines()[-1]


def prepare() -> Artifacts:
    """Install packages, build binaries and images (each step reuses its cache); idempotent."""
    subprocess.run(["bash", str(ROOT / "hack" / "node-prereqs.sh")], check=True)
    plane_bin = Path(_last_line(["bash", str(ROOT / "hack" / "build-controlplane.sh")]))
    node_bin = Path(_last_line(["bash", str(ROOT / "hack" / "build-node.sh")]))
    subprocess.run(["bash", str(ROOT / "hack" / "build-images.sh")], check=True, stdout=subprocess.DEVNULL)
    env_file = cache_dir() / "images" / "images.env"
    images = dict(line.split("=", 1) for line in env_file.read_text().split())
    return Artifacts(plane_bin, node_bin, images)


def node_ip() -> str:
    """The host's address on its default route: reachable from pods (through the bridge) and from the host."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.123", 9))  # no packet is sent: this only selects the outgoing interface
        return sock.getsockname()[0]


@dataclass
class Node(Cluster):
    """A running node cluster. ``kubeconfig`` is the admin kubeconfig; ``layout`` says where state lives."""

    layout: nodeconfig.Layout = field(default=None)  # type: ignore[assignment]
    node_name: str = NODE_NAME
    ip: str = ""
    images: dict[str, str] = field(default_factory=dict)  # hack/build-images.sh's KEY=reference lines

    @property
    def root(self) -> Path:
        """The repository the node runs (manifests/, examples/)."""
        return ROOT

    def volume_dir(self, name: str) -> Path:
        return self.layout.volumes / name

    def local_volume(self, name: str, size: str = "10Gi") -> Path:
        """Create a local PersistentVolume ``name`` backed by a fresh host directory; returns the directory.

        The directory is world-writable: pods run as arbitrary non-root UIDs."""
        path = self.volume_dir(name)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o1777)
        self.apply(nodeconfig.local_pv(name, path, self.node_name, size))
        return path

    def stop(self) -> None:
        teardown(self)


def _sysctls() -> None:
    for key in ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"):
        Path("/proc/sys", key).write_text("1")


def _apiserver_argv(bin_dir: Path, pki: Path, ip: str, port: int, etcd_url: str) -> list[str]:
    return [
        str(bin_dir / "kube-apiserver"), f"--etcd-servers={etcd_url}",
        "--bind-address=0.0.0.0", f"--secure-port={port}", f"--advertise-address={ip}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'client-ca.crt'}",
        "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        # The node name is not in any DNS the apiserver uses: reach the kubelet by its IP (logs, exec).
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--service-account-issuer=https://kubernetes.default.svc.{nodeconfig.CLUSTER_DOMAIN}",
        f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={nodeconfig.SERVICE_CIDR}", "--allow-privileged=true", "--profiling=false",
    ]


def _kubeconfig_for(node: Node, stem: str) -> Path:
    pki = node.plane.pki
    return kubeconfig.write(node.plane.workdir / "kubeconfigs" / f"{stem}.kubeconfig", node.server, pki / "ca.crt",
                            kubeconfig.Credentials(cert=pki / f"{stem}.crt", key=pki / f"{stem}.key"))


def _insecure() -> object:
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # components serve self-signed health endpoints; only health is read
    return context


def _start(node: Node, name: str, argv: list[str], check, timeout_s: float, what: str) -> Process:
    process = spawn(name, argv, node.plane.workdir / "logs")
    node.plane.processes.append(process)
    node.plane.save()
    node.plane.timings[name] = wait_until(process, check, timeout_s, what)
    return process


def _start_plane(node: Node, art: Artifacts, timeout_s: float) -> None:
    plane = node.plane
    etcd_url = _start_etcd(plane, art.plane_bin, timeout_s)
    port = int(plane.server.rsplit(":", 1)[1])
    admin = plane.admin_ssl()
    _start(node, "kube-apiserver", _apiserver_argv(art.plane_bin, plane.pki, node.ip, port, etcd_url),
           lambda: https_get(f"{plane.server}/readyz", admin)[0] == 200, timeout_s, "/readyz")
    # CRDs before the controller manager: its garbage collector then knows them from its first discovery.
    node.install_crds()
    kcm_port = free_port()
    _start(node, "kube-controller-manager", [
        str(art.plane_bin / "kube-controller-manager"), f"--kubeconfig={_kubeconfig_for(node, 'controller-manager')}",
        "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", f"--cert-dir={plane.workdir / 'kcm-certs'}",
        "--leader-elect=false", "--use-service-account-credentials=true",
        f"--service-account-private-key-file={plane.pki / 'sa.key'}", f"--root-ca-file={plane.pki / 'ca.crt'}",
        f"--service-cluster-ip-range={nodeconfig.SERVICE_CIDR}", "--controllers=*", "--profiling=false",
    ], lambda: https_get(f"https://127.0.0.1:{kcm_port}/healthz", _insecure())[0] == 200, timeout_s, "/healthz")
    sched_port = free_port()
    _start(node, "kube-scheduler", [
        str(art.node_bin / "kube-scheduler"), f"--kubeconfig={_kubeconfig_for(node, 'scheduler')}",
        f"--authentication-kubeconfig={_kubeconfig_for(node, 'scheduler')}",
        f"--authorization-kubeconfig={_kubeconfig_for(node, 'scheduler')}",
        "--bind-address=127.0.0.1", f"--secure-port={sched_port}", "--leader-elect=false", "--profiling=false",
    ], lambda: https_get(f"https://127.0.0.1:{sched_port}/healthz", _insecure())[0] == 200, timeout_s, "/healthz")


def _start_runtime(node: Node, timeout_s: float) -> None:
    layout = node.layout
    for directory in (layout.containerd_socket.parent, layout.cni_conf_dir, layout.containerd_root):
        directory.mkdir(parents=True, exist_ok=True)
    default = subprocess.run(["containerd", "config", "default"], stdout=subprocess.PIPE, text=True,
                             check=True).stdout
    config = layout.state / "containerd" / "config.toml"
    config.write_text(nodeconfig.containerd_config(default, layout))
    (layout.cni_conf_dir / "10-kubetune.conflist").write_text(nodeconfig.cni_conflist(layout))
    socket_path = layout.containerd_socket
    socket_path.unlink(missing_ok=True)

    def ready() -> bool:
        return subprocess.run(["ctr", "-a", str(socket_path), "version"], capture_output=True,
                              timeout=10).returncode == 0

    _start(node, "containerd", ["containerd", "--config", str(config)], ready, timeout_s, "containerd socket")


def _node_ready(node: Node) -> bool:
    result = node.kubectl("get", "node", node.node_name, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _start_kubelet(node: Node, art: Artifacts, timeout_s: float) -> None:
    layout = node.layout
    config = layout.state / "kubelet-config.yaml"
    config.write_text(nodeconfig.kubelet_config(layout, node.plane.pki, port=free_port(), healthz_port=free_port(),
                                                dns_ip=node.ip))
    _start(node, "kubelet", [
        str(art.node_bin / "kubelet"), f"--config={config}", f"--kubeconfig={_kubeconfig_for(node, 'kubelet')}",
        f"--root-dir={layout.kubelet_root}", f"--hostname-override={node.node_name}", f"--node-ip={node.ip}",
    ], lambda: _node_ready(node), timeout_s, f"Node {node.node_name} Ready")
    proxy_config = layout.state / "kube-proxy-config.yaml"
    healthz = free_port()
    proxy_config.write_text(nodeconfig.kube_proxy_config(_kubeconfig_for(node, "kube-proxy"), node.node_name,
                                                         metrics_port=free_port(), healthz_port=healthz))
    _start(node, "kube-proxy", [str(art.node_bin / "kube-proxy"), f"--config={proxy_config}"],
           lambda: https_get(f"http://127.0.0.1:{healthz}/healthz", None)[0] == 200, timeout_s, "/healthz")


def _dns_answers(ip: str) -> bool:
    """A minimal DNS query for kubernetes.default.svc.cluster.local over UDP: any answer means CoreDNS serves."""
    name = b"".join(bytes([len(p)]) + p.encode() for p in f"kubernetes.default.svc.{nodeconfig.CLUSTER_DOMAIN}"
                    .split(".")) + b"\0"
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(query, (ip, 53))
        reply = sock.recv(512)
    return reply[:2] == b"\x12\x34" and reply[3] & 0x0F == 0 and int.from_bytes(reply[6:8], "big") > 0


def _start_addons(node: Node, art: Artifacts, timeout_s: float) -> None:
    state = node.layout.state
    corefile = state / "Corefile"
    corefile.write_text(nodeconfig.corefile(node.ip, node.kubeconfig))
    _start(node, "coredns", [str(art.node_bin / "coredns"), "-conf", str(corefile)],
           lambda: _dns_answers(node.ip), timeout_s, "DNS answers")
    # The training-operator's certificate rotator gives up unless its Secret exists; the webhook itself is not
    # registered (its certificate names an in-cluster Service), so PyTorchJobs are not validated here.
    node.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow"}},
                {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                 "metadata": {"name": "training-operator-webhook-cert", "namespace": "kubeflow"}}])
    probe = free_port()
    _start(node, "training-operator", [
        str(art.node_bin / "training-operator.v1"), f"--kubeconfig={node.kubeconfig}", "--enable-scheme=pytorchjob",
        "--metrics-bind-address=0", f"--health-probe-bind-address=127.0.0.1:{probe}",
        f"--webhook-server-port={free_port()}", f"--pytorch-init-container-image={art.images['PYTORCH_INIT_IMAGE']}",
    ], lambda: _webhook_certs_mounted(node) and https_get(f"http://127.0.0.1:{probe}/readyz", None)[0] == 200,
        timeout_s, "/readyz")
    node.apply(nodeconfig.local_storage_class())


def _webhook_certs_mounted(node: Node) -> bool:
    """Do what the kubelet does for the training-operator's pod: put its webhook Secret's keys into the cert dir.

    Its certificate rotator fills the Secret, then waits (before starting any controller) until the files
    appear in the fixed directory a pod would have the Secret mounted at."""
    secret = json.loads(node.kubectl("get", "secret", "-n", "kubeflow", "training-operator-webhook-cert", "-o",
                                     "json").stdout)
    data = secret.get("data") or {}
    if not {"tls.crt", "tls.key", "ca.crt"} <= data.keys():
        return False
    KUBEFLOW_CERT_DIR.mkdir(parents=True, exist_ok=True)
    for key, value in data.items():
        target = KUBEFLOW_CERT_DIR / key
        content = base64.b64decode(value)
        if not target.exists() or target.read_bytes() != content:
            target.write_bytes(content)
    return True


def install_operator(node: Node, art: Artifacts, timeout_s: float = 180.0) -> None:
    """The operator Deployment from manifests/ through a kustomize overlay for the local images."""
    overlay = node.layout.state / "operator-overlay"
    overlay.mkdir(parents=True, exist_ok=True)
    (overlay / "kustomization.yaml").write_text(nodeconfig.operator_overlay(
        Path(os.path.relpath(ROOT / "manifests", overlay)), art.operator_image,
        {"runtime-image": art.runtime_image, "vllm-image": art.images["VLLM_IMAGE"]}))
    node.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(overlay))
    deadline = time.monotonic() + timeout_s
    while not operator_ready(node):
        if time.monotonic() > deadline:
            logs = node.kubectl("logs", "-n", OPERATOR_NAMESPACE, "deployment/kubetune-operator", "--tail=40",
                                check=False)
            pods = node.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "wide", check=False).stdout
            raise StartError(f"kubetune operator not Ready in {timeout_s:.0f}s:\n{pods}\n{logs.stdout}{logs.stderr}")
        time.sleep(1)


def operator_ready(node: Node) -> list[str]:
    """Names of the operator pods whose container is Ready (what the Deployment counts as available)."""
    result = node.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-l", OPERATOR_SELECTOR, "-o", "json", check=False)
    pods = json.loads(result.stdout).get("items", []) if result.returncode == 0 else []
    return [p["metadata"]["name"] for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(c.get("ready") for c in (p.get("status") or {}).get("containerStatuses") or [])]


@contextlib.contextmanager
def machine_lock():
    """One node per machine: it owns host ports, a bridge, iptables rules and containerd's image store."""
    path = cache_dir() / "node.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def start_node(workdir: Path, art: Artifacts | None = None, *, with_operator: bool = True,
               timeout_s: float = 120.0) -> Node:
    """Start every component in ``workdir``; on failure stop what was started and raise with its log tail."""
    workdir = workdir.resolve()
    people = cache_dir() / "node" / "state"
    running = load_node(people) if workdir != people.resolve() else None
    if running and any(p.alive() for p in running.plane.processes):
        raise StartError(f"the node cluster of `make node-up` runs in {people} (it owns the pod bridge, port 53 on "
                         f"the node IP and containerd's store): stop it with `make node-down` first")
    art = art or prepare()
    began = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    ip = node_ip()
    plane = Plane(workdir, f"https://{ip}:{free_port()}")
    layout = nodeconfig.Layout(state=workdir, containerd_root=cache_dir() / "containerd" / "root")
    node = Node(plane, kubectl_binary(), layout=layout, ip=ip, images=dict(art.images))
    write_node_pki(plane.pki, NODE_NAME, ip)
    kubeconfig.write(plane.kubeconfig, plane.server, plane.pki / "ca.crt",
                     kubeconfig.Credentials(cert=plane.pki / "admin.crt", key=plane.pki / "admin.key"))
    try:
        _sysctls()
        _start_plane(node, art, timeout_s)
        _start_runtime(node, timeout_s)
        _start_kubelet(node, art, timeout_s)
        _start_addons(node, art, timeout_s)
        if with_operator:
            install_operator(node, art)
    except BaseException:
        teardown(node)
        raise
    plane.timings["total"] = time.monotonic() - began
    plane.save()
    (workdir / NODE_STATE).write_text(json.dumps({"ip": ip, "node_name": NODE_NAME, "images": art.images,
                                                  "containerd_root": str(layout.containerd_root)}))
    return node


def load_node(workdir: Path) -> Node | None:
    if not (workdir / NODE_STATE).exists():
        return None
    data = json.loads((workdir / NODE_STATE).read_text())
    plane = Plane.load(workdir)
    layout = nodeconfig.Layout(state=workdir, containerd_root=Path(data["containerd_root"]))
    return Node(plane, kubectl_binary(), layout=layout, node_name=data["node_name"], ip=data["ip"],
                images=data.get("images", {}))


def teardown(node: Node, grace_s: float = 60.0) -> None:
    """Delete every pod (so the kubelet releases sandboxes, mounts and addresses), stop components by PID,
    then remove what a crash could leave: CRI containers, mounts under the state dir, kube-proxy's rules."""
    names = {p.name for p in node.plane.processes if p.alive()}
    # Controllers first: otherwise Deployments, Jobs and PyTorchJobs replace the pods deleted below.
    for process in node.plane.processes:
        if process.name in ("training-operator", "kube-controller-manager", "kube-scheduler"):
            stop(process)
    if {"kube-apiserver", "kubelet", "containerd"} <= names:
        node.kubectl("delete", "pods", "--all-namespaces", "--all", "--grace-period=2", "--wait=false", check=False)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _sandboxes(node):
            time.sleep(1)
    sock = str(node.layout.containerd_socket)
    proxy = next((p for p in node.plane.processes if p.name == "kube-proxy"), None)
    for process in reversed(node.plane.processes):
        if process.name == "containerd":
            _remove_containers(sock)
        stop(process)
    node.plane.processes.clear()
    node.plane.save()
    if proxy:  # its KUBE-* chains and rules would otherwise steer Service addresses of a later run
        subprocess.run([proxy.argv[0], "--cleanup"], capture_output=True)
    _unmount_under(node.layout.state)
    subprocess.run(["ip", "link", "del", nodeconfig.BRIDGE], capture_output=True)


def _sandboxes(node: Node) -> list[str]:
    result = subprocess.run(["ctr", "-a", str(node.layout.containerd_socket), "-n", "k8s.io", "tasks", "ls", "-q"],
                            capture_output=True, text=True, timeout=30)
    return result.stdout.split() if result.returncode == 0 else []


def _remove_containers(sock: str) -> None:
    ctr = ["ctr", "-a", sock, "-n", "k8s.io"]
    tasks = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True).stdout.split()
    for task in tasks:
        subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True)
    time.sleep(0.5 if tasks else 0)
    for task in tasks:
        subprocess.run([*ctr, "tasks", "rm", "-f", task], capture_output=True)
    containers = subprocess.run([*ctr, "containers", "ls", "-q"], capture_output=True, text=True).stdout.split()
    for container in containers:
        subprocess.run([*ctr, "containers", "rm", container], capture_output=True)


def _unmount_under(directory: Path) -> None:
    prefix = str(directory.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)


__all__ = ["Artifacts", "Node", "StartError", "load_node", "machine_lock", "prepare", "start_node", "teardown"]
