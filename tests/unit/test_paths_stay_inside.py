"""Paths built from what people write stay where they belong: pvc:// inside its claim, local records inside the
work directory, dataset_info.json files inside dataset_dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kubetune.cli.main import main as kubetune_main
from kubetune.config.data_args import DataConfig
from kubetune.data.formats import DataFormatError
from kubetune.data.sources import resolve_sources
from kubetune.local.workdir import WorkDir
from kubetune.uris import UriError, UriResolver, split_pvc
from tests.builders import make_finetunejob, make_modelexport


@pytest.mark.parametrize(("uri", "message"), [
    ("pvc://../x", "claim '..' is not a DNS-1123 subdomain"),
    ("pvc://models/../../x", "'..' is not allowed in a pvc:// path"),
    ("pvc://models/a/../../other/x", "'..' is not allowed"),
    ("pvc://Models/x", "claim 'Models' is not a DNS-1123 subdomain"),
    ("pvc://a_b/x", "claim 'a_b' is not a DNS-1123 subdomain"),
])
def test_pvc_uris_that_leave_their_claim_are_refused(tmp_path, uri, message):
    with pytest.raises(UriError, match=message):
        UriResolver(pvc_root=tmp_path).resolve(uri)


def test_pvc_paths_are_normalised_inside_the_claim(tmp_path):
    resolver = UriResolver(pvc_root=tmp_path)
    assert resolver.resolve("pvc://models//etc/passwd") == str(tmp_path / "models" / "etc" / "passwd")
    assert resolver.resolve("pvc://models/./a//b/") == str(tmp_path / "models" / "a" / "b")
    assert split_pvc("pvc://data/sets/x.jsonl") == ("data", "sets/x.jsonl")


def test_a_symlink_out_of_the_claim_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "pvc" / "models").mkdir(parents=True)
    (tmp_path / "pvc" / "models" / "shared").symlink_to(outside)
    (tmp_path / "pvc" / "models" / "inner").symlink_to(tmp_path / "pvc" / "models")
    resolver = UriResolver(pvc_root=tmp_path / "pvc")
    with pytest.raises(UriError, match=r"outside .*models"):
        resolver.resolve("pvc://models/shared/weights")
    assert resolver.resolve("pvc://models/inner/w") == str(tmp_path / "pvc" / "models" / "inner" / "w")


def test_run_refuses_names_and_namespaces_that_are_not_kubernetes_names(tmp_path, capsys):
    job = make_finetunejob("ok")
    job["metadata"] = {"name": "../../../escaped", "namespace": "../up"}
    file = tmp_path / "cr" / "job.yaml"
    file.parent.mkdir()
    file.write_text(yaml.safe_dump(job))
    work = tmp_path / "a" / "b" / "work"
    assert kubetune_main(["run", str(file), "--work-dir", str(work)]) == 2
    err = capsys.readouterr().err
    assert f"{file}:4: metadata.name: '../../../escaped' is not a DNS-1123 subdomain" in err
    assert f"{file}:5: metadata.namespace: '../up' is not a DNS-1123 label" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cr", "job.yaml"]  # nothing written anywhere


def test_work_dir_never_builds_a_path_outside_itself(tmp_path):
    work = WorkDir(tmp_path / "work")
    assert work.path(("team-a", "FineTuneJob", "sft.v2")) == tmp_path / "work/objects/team-a/FineTuneJob/sft.v2.json"
    for key in (("..", "FineTuneJob", "x"), ("ns", "FineTuneJob", "../../x"), ("ns", "../x", "y")):
        with pytest.raises(ValueError, match="no record path"):
            work.path(key)


def test_run_refuses_a_pvc_output_outside_its_claim_before_writing(tmp_path, capsys):
    job = make_finetunejob("sft", output={"uri": "pvc://models/../../../escaped/"})
    file = tmp_path / "job.yaml"
    file.write_text(yaml.safe_dump(job))
    code = kubetune_main(["run", str(file), "--work-dir", str(tmp_path / "w"), "--pvc-root", str(tmp_path / "pvc")])
    captured = capsys.readouterr()
    assert code == 2  # refused by the schema, as the apiserver refuses it; the runtime checks again (split_pvc)
    assert f"{file}:" in captured.err and "spec.output.uri" in captured.err
    assert "'pvc://models/../../../escaped/'" in captured.err
    assert not (tmp_path / "pvc").exists() and not list(tmp_path.parent.glob("escaped*"))


def write_registry(root: Path, entries: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ok.json").write_text(json.dumps([{"instruction": "hi", "output": "there"}]))
    (root / "dataset_info.json").write_text(json.dumps(entries))
    return root


@pytest.mark.parametrize("file_name", ["../../../../etc/passwd", "/etc/passwd", "sub/../../secret.json"])
def test_registry_file_names_stay_inside_dataset_dir(tmp_path, file_name):
    data_dir = write_registry(tmp_path / "data", {"ok": {"file_name": "ok.json"}, "evil": {"file_name": file_name}})
    with pytest.raises(DataFormatError) as info:
        resolve_sources(["ok"], DataConfig(dataset_dir=str(data_dir)))
    err = info.value
    assert (err.file, err.field) == (str(data_dir / "dataset_info.json"), "evil.file_name")
    assert f"{file_name!r} leads outside the dataset folder {data_dir}" in str(err)
    assert str(err).startswith(f"{data_dir / 'dataset_info.json'}: evil.file_name: ")


def test_registry_symlink_out_of_dataset_dir_is_refused_entries_inside_still_work(tmp_path):
    (tmp_path / "secret.json").write_text("[]")
    data_dir = write_registry(tmp_path / "data", {"linked": {"file_name": "link.json"}})
    (data_dir / "link.json").symlink_to(tmp_path / "secret.json")
    with pytest.raises(DataFormatError, match=r"linked\.file_name: 'link\.json' leads outside"):
        resolve_sources(["linked"], DataConfig(dataset_dir=str(data_dir)))

    data_dir = write_registry(tmp_path / "data2", {"ok": {"file_name": "ok.json"}, "sub": {"file_name": "./ok.json"}})
    inline = {"abs": {"file_name": str(data_dir / "ok.json")}}  # a FineTuneJob's dataset URI, resolved already
    sources = resolve_sources(["ok", "sub", "abs"], DataConfig(dataset_dir=str(data_dir), dataset_info=inline))
    assert [s.path.resolve() for s in sources] == [(data_dir / "ok.json").resolve()] * 3


@pytest.mark.parametrize(("raw", "message", "row"), [
    (b'{"a": {"file_name": "x.json"},\n "a": {"file_name": "y.json"}}', "duplicate key 'a'", None),
    (b'{"a": {"file_name": "caf\xe9.json"}}', "not UTF-8 text", 1),
    (b'["a"]', "expected a JSON object", None),
])
def test_registry_file_problems_are_located(tmp_path, raw, message, row):
    (tmp_path / "dataset_info.json").write_bytes(raw)
    with pytest.raises(DataFormatError, match=message) as info:
        resolve_sources(["a"], DataConfig(dataset_dir=str(tmp_path)))
    assert info.value.file == str(tmp_path / "dataset_info.json") and info.value.row == row


@pytest.mark.parametrize(("metadata", "message"), [
    ({"name": "../../../escaped"}, "metadata.name: '../../../escaped' is not a DNS-1123 subdomain"),
    ({"name": "ok", "uid": "../../../e"}, "metadata.uid: '../../../e' is not a UID"),
])
def test_export_of_a_resource_file_keeps_its_folder_name_a_name(tmp_path, capsys, metadata, message):
    body = make_modelexport(source={"fineTuneJobRef": None, "model": {"uri": f"file://{tmp_path}/base"}},
                            output={"uri": f"file://{tmp_path}/a/b/c/"})
    body["metadata"] = metadata
    file = tmp_path / "mexp.yaml"
    file.write_text(yaml.safe_dump(body))
    assert kubetune_main(["export", str(file)]) == 1
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mexp.yaml"]
