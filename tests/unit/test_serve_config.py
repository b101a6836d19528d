"""Serve and export configs: LLaMA-Factory keys, API_* variables, CR mappings, errors with file and line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from kubetune.api.inferenceservice import InferenceService
from kubetune.api.modelexport import ModelExport
from kubetune.config.export_args import ExportConfig
from kubetune.config.files import ConfigError
from kubetune.config.mapping.export import resolve_modelexport
from kubetune.config.mapping.serve import resolve_inferenceservice
from kubetune.config.serve_args import ServeConfig, apply_endpoint_overrides
from kubetune.export.cli import load_export, parse_overrides
from kubetune.serve.cli import load_serve_config
from kubetune.uris import UriError, UriResolver
from tests.builders import make_inferenceservice, make_modelexport


def _args(file: Path, **kw) -> argparse.Namespace:
    base = {"file": str(file), "overrides": [], "host": None, "port": None, "api_key": None,
            "served_model_name": None, "pvc_root": None, "overwrite": False}
    return argparse.Namespace(**{**base, **kw})


def test_llamafactory_inference_yaml(tmp_path):
    cfg = tmp_path / "api.yaml"
    cfg.write_text(yaml.safe_dump({"model_name_or_path": "/m", "adapter_name_or_path": "/a1,/a2", "template": "qwen",
                                   "finetuning_type": "lora", "infer_backend": "vllm", "vllm_maxlen": 2048}))
    config = load_serve_config(_args(cfg), env={})
    assert config.adapter_name_or_path == ["/a1", "/a2"] and config.backend == "vllm"
    assert config.max_model_len == 2048 and config.port == 8000 and config.model_name == "m"


@pytest.mark.parametrize(("flags", "env", "expected"), [
    ({}, {}, ("0.0.0.0", 8000, None, "m")),
    ({}, {"API_HOST": "127.0.0.1", "API_PORT": "9001", "API_KEY": "k", "API_MODEL_NAME": "gpt-3.5-turbo"},
     ("127.0.0.1", 9001, "k", "gpt-3.5-turbo")),
    ({"port": 7000, "api_key": "flag"}, {"API_PORT": "9001", "API_KEY": "env"}, ("0.0.0.0", 7000, "flag", "m")),
])
def test_endpoint_precedence_flags_then_env_then_file(flags, env, expected):
    config = apply_endpoint_overrides(ServeConfig(model_name_or_path="/m"), flags, env)
    assert (config.host, config.port, config.api_key, config.model_name) == expected


@pytest.mark.parametrize(("file_threads", "flag", "expected"), [
    (None, None, None), (3, None, 3), (3, 1, 1), (None, 2, 2),
], ids=["default", "file", "flag-over-file", "flag"])
def test_threads_from_file_and_flag(tmp_path, file_threads, flag, expected):
    cfg = tmp_path / "api.yaml"
    cfg.write_text(yaml.safe_dump({"model_name_or_path": "/m", **({"threads": file_threads} if file_threads else {})}))
    assert load_serve_config(_args(cfg, threads=flag), env={}).threads == expected


def test_threads_flag_below_one_is_rejected(tmp_path):
    cfg = tmp_path / "api.yaml"
    cfg.write_text("model_name_or_path: /m\n")
    with pytest.raises(ValueError, match="threads"):
        load_serve_config(_args(cfg, threads=0), env={})


def test_unknown_key_names_file_and_line(tmp_path):
    cfg = tmp_path / "api.yaml"
    cfg.write_text("model_name_or_path: /m\ntemprature: 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_serve_config(_args(cfg), env={})
    assert f"{cfg}:2: temprature:" in str(err.value) and "did you mean temperature?" in str(err.value)


def test_inferenceservice_uri_sources_resolve(tmp_path):
    isvc = InferenceService.model_validate(make_inferenceservice(
        name="bot", model={"uri": "pvc://models/merged"}, adapters=[{"name": "v2", "uri": "file:///adapters/v2"}]))
    config = resolve_inferenceservice(isvc, UriResolver(pvc_root=tmp_path))
    assert config.model_name_or_path == str(tmp_path / "models" / "merged")
    assert [(a.name, a.path) for a in config.lora_adapters] == [("v2", "/adapters/v2")]
    assert config.model_name == "bot" and config.backend == "hf"


def test_inferenceservice_refs_need_the_local_runner():
    isvc = InferenceService.model_validate(make_inferenceservice(model={"uri": None, "fineTuneJobRef": {"name": "x"}}))
    with pytest.raises(UriError, match="kubetune run"):
        resolve_inferenceservice(isvc, UriResolver())


def test_modelexport_maps_to_export_config(tmp_path):
    mexp = ModelExport.model_validate(make_modelexport(
        name="m1", source={"fineTuneJobRef": None, "model": {"uri": "pvc://models/base"},
                           "adapter": {"uri": "pvc://runs/sft"}},
        dtype="float16", maxShardSize="2GB", output={"uri": "pvc://exports/"},
        quantization={"method": "gptq", "bits": 4, "groupSize": 64,
                      "calibration": {"uri": "pvc://data/calib.jsonl", "samples": 32, "maxLength": 256}}))
    config = resolve_modelexport(mexp, UriResolver(pvc_root=tmp_path))
    assert config.model_name_or_path == str(tmp_path / "models/base")
    assert config.adapter_name_or_path == [str(tmp_path / "runs/sft")]
    assert config.export_dir == str(tmp_path / "exports/m1")
    assert (config.infer_dtype, config.shard_size, config.quantization) == ("float16", "2GB", ("gptq", 4))
    assert config.export_quantization_dataset == str(tmp_path / "data/calib.jsonl")
    assert (config.export_quantization_nsamples, config.export_quantization_maxlen) == (32, 256)
    assert config.base_model_uri == "pvc://models/base"


def test_modelexport_with_a_reference_needs_the_local_runner(tmp_path):
    cr = tmp_path / "mexp.yaml"
    cr.write_text(yaml.safe_dump(make_modelexport()))
    with pytest.raises(UriError, match="kubetune run"):
        load_export(_args(cr))


@pytest.mark.parametrize(("fields", "message"), [
    ({"export_quantization_bit": 4}, "export_quantization_dataset is required for gptq"),
    ({"export_quantization_bit": 2, "export_quantization_method": "bnb"}, "bnb quantizes to 4 or 8 bits"),
    ({"export_hub_model_id": "org/x"}, "not supported"),
    ({"adapter_name_or_path": "/a", "merge": False}, "merged first"),
])
def test_export_config_rejects(fields, message):
    with pytest.raises(ValueError, match=message):
        ExportConfig.model_validate({"model_name_or_path": "/m", "export_dir": "/o", **fields})


def test_overrides_parse_as_yaml_values():
    assert parse_overrides(["export_size=2", "template=qwen", "merge=false"]) == \
        {"export_size": 2, "template": "qwen", "merge": False}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["oops"])
