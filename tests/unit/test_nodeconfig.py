"""The one-node cluster's configuration renders: pure functions, checked on literal inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support import nodeconfig

LAYOUT = nodeconfig.Layout(state=Path("/s"), containerd_root=Path("/cache/containerd/root"))

CONTAINERD_DEFAULT = """version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
    restrict_oom_score_adj = false
    sandbox_image = "registry.k8s.io/pause:3.6"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"
"""


def test_containerd_config_moves_every_path_under_the_layout():
    text = nodeconfig.containerd_config(CONTAINERD_DEFAULT, LAYOUT)
    assert 'root = "/cache/containerd/root"' in text and 'state = "/s/containerd/state"' in text
    assert 'address = "/s/containerd/containerd.sock"' in text
    assert 'sandbox_image = "registry.k8s.io/pause:3.10"' in text
    assert 'bin_dir = "/usr/lib/cni"' in text and 'conf_dir = "/s/cni/net.d"' in text
    assert "restrict_oom_score_adj = true" in text and "/var/lib/containerd" not in text


def test_containerd_config_fails_loudly_when_a_setting_moved():
    with pytest.raises(ValueError, match="restrict_oom_score_adj"):
        nodeconfig.containerd_config(CONTAINERD_DEFAULT.replace("restrict_oom_score_adj = false", ""), LAYOUT)


def test_kubelet_config_has_the_settings_the_node_needs():
    cfg = yaml.safe_load(nodeconfig.kubelet_config(LAYOUT, Path("/s/pki"), port=1, healthz_port=2, dns_ip="192.0.2.2"))
    assert (cfg["failCgroupV1"], cfg["cgroupDriver"], cfg["oomScoreAdj"], cfg["failSwapOn"]) == (
        False, "cgroupfs", 0, False)
    assert cfg["containerRuntimeEndpoint"] == "unix:///s/containerd/containerd.sock"
    assert cfg["clusterDNS"] == ["192.0.2.2"] and cfg["imageGCHighThresholdPercent"] == 100
    assert cfg["authentication"]["anonymous"] == {"enabled": False} and cfg["authorization"] == {"mode": "Webhook"}


def test_cni_keeps_addresses_in_the_state_dir():
    plugins = json.loads(nodeconfig.cni_conflist(LAYOUT))["plugins"]
    assert plugins[0]["ipam"]["dataDir"] == "/s/cni/ipam"
    assert plugins[0]["ipam"]["ranges"] == [[{"subnet": nodeconfig.POD_CIDR}]]


def test_operator_overlay_runs_local_images_never_pulled():
    doc = yaml.safe_load(nodeconfig.operator_overlay(Path("../manifests"), "localhost/kubetune-operator:abc",
                                                     {"runtime-image": "localhost/kubetune-runtime:def",
                                                      "vllm-image": "localhost/kubetune-vllm:ghi"}))
    assert doc["resources"] == ["../manifests"]
    assert doc["images"] == [{"name": "ghcr.io/kubetune/kubetune-operator", "newName": "localhost/kubetune-operator",
                              "newTag": "abc"}]
    patch = json.loads(doc["patches"][0]["patch"])
    args = next(p["value"] for p in patch if p["path"].endswith("/args"))
    assert "--runtime-image=localhost/kubetune-runtime:def" in args and "--image-pull-policy=Never" in args
    assert "--vllm-image=localhost/kubetune-vllm:ghi" in args
    assert not [a for a in args if "ghcr.io" in a]  # the shipped images are replaced, not added to
    # the rest of the shipped Deployment's arguments stay: the admin's policy and the pods' uid
    assert "--policy=/etc/kubetune-operator/policy.yaml" in args and "--run-as-user=65532" in args
    assert {"op": "add", "path": "/spec/template/spec/containers/0/imagePullPolicy", "value": "Never"} in patch


def test_local_pv_is_pinned_to_the_node():
    pv = nodeconfig.local_pv("v1", Path("/s/volumes/v1"), "kubetune-node")
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term["values"] == ["kubetune-node"] and pv["spec"]["local"] == {"path": "/s/volumes/v1"}
