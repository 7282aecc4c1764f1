"""Model references → verified local directories: MLflow registry, cache, manifests, errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from plugins.server import icx_command, server_env

from infinitecontext.server.launch import ServeOptions, vllm_command, vllm_env
from infinitecontext.server.manifest import (
    MANIFEST_NAME,
    ModelError,
    check_hf_dir,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from infinitecontext.server.resolve import cache_key, parse_registry_uri, resolve_model


def copy_model(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for file in source.iterdir():
        (target / file.name).write_bytes(file.read_bytes())
    return target


def run_icx_serve(reference: str, tracking_uri: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*icx_command(), "serve", reference, "--cache-dir", str(cache), "--port", "1"],
        capture_output=True,
        text=True,
        env=server_env(tracking_uri),
        timeout=180,
    )


def test_registry_uris_parse_and_stages_are_refused():
    assert parse_registry_uri("models:/m/3").version == "3"
    assert parse_registry_uri("models:/m@champion").alias == "champion"
    assert parse_registry_uri("runs:/abc/model") is None
    with pytest.raises(ModelError, match="version must be a number"):
        parse_registry_uri("models:/m/Production")


def test_cache_keys_are_distinct_and_filesystem_safe():
    keys = {cache_key(u) for u in ("models:/a/1", "models:/a/2", "models:/a_1")}
    assert len(keys) == 3
    assert all("/" not in k and ":" not in k for k in keys)


def test_registry_model_is_downloaded_once_with_a_manifest(registered_tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_tiny.tracking_uri)
    uri = f"models:/{registered_tiny.name}@{registered_tiny.alias}"
    first = resolve_model(uri, tmp_path)
    assert first.name == cache_key(f"models:/{registered_tiny.name}/{registered_tiny.version}")
    assert read_manifest(first) == read_manifest(registered_tiny.source_dir)
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no staging left behind
    assert resolve_model(f"models:/{registered_tiny.name}/1", tmp_path) == first


def test_run_artifact_uri_resolves_to_a_verified_cache_entry(
    registered_tiny, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_tiny.tracking_uri)
    model = resolve_model(f"runs:/{registered_tiny.run_id}/model", tmp_path)
    verify_manifest(model, required=True)
    assert read_manifest(model) == read_manifest(registered_tiny.source_dir)


def test_corrupt_cache_entry_is_downloaded_again(registered_tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_tiny.tracking_uri)
    uri = f"models:/{registered_tiny.name}/{registered_tiny.version}"
    cached = resolve_model(uri, tmp_path)
    weights = cached / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert resolve_model(uri, tmp_path) == cached
    verify_manifest(cached, required=True)


def test_partial_download_is_not_a_cache_entry(registered_tiny, tmp_path):
    partial = copy_model(registered_tiny.source_dir, tmp_path / "partial")
    (partial / MANIFEST_NAME).unlink()
    with pytest.raises(ModelError, match=r"no icx-manifest\.json"):
        verify_manifest(partial, required=True)


def test_local_dir_with_checksum_mismatch_is_refused(tiny_hf_model, tmp_path):
    model = copy_model(tiny_hf_model, tmp_path / "model")
    weights = bytearray((model / "model.safetensors").read_bytes())
    weights[-1] ^= 0xFF  # one flipped bit pattern: still loadable, only the checksum tells
    (model / "model.safetensors").write_bytes(weights)
    check_hf_dir(model)
    with pytest.raises(ModelError, match=r"sha256 mismatch: model\.safetensors"):
        resolve_model(str(model), tmp_path / "cache")


def test_truncated_safetensors_is_refused(tiny_hf_model, tmp_path):
    model = copy_model(tiny_hf_model, tmp_path / "model")
    (model / MANIFEST_NAME).unlink()
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4096])
    with pytest.raises(ModelError, match="truncated or corrupt safetensors"):
        check_hf_dir(model)
    write_manifest(model)  # a manifest of a broken file does not make it whole
    with pytest.raises(ModelError, match="truncated"):
        resolve_model(str(model), tmp_path / "cache")


@pytest.mark.slow
def test_icx_serve_unknown_registry_model_exits_with_a_clear_error(mlflow_server, tmp_path):
    result = run_icx_serve("models:/no-such-model/1", mlflow_server.url, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "models:/no-such-model/1: cannot download from MLflow" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_icx_serve_corrupt_directory_exits_with_a_clear_error(tiny_hf_model, tmp_path):
    model = copy_model(tiny_hf_model, tmp_path / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4096])
    result = run_icx_serve(str(model), "http://127.0.0.1:1", tmp_path / "cache")
    assert result.returncode == 2, result.stderr
    assert "checksum verification failed" in result.stderr
    assert "size mismatch: model.safetensors" in result.stderr
    assert "Traceback" not in result.stderr


def test_icx_serve_missing_directory_exits_with_a_clear_error(tmp_path):
    result = run_icx_serve(str(tmp_path / "nothing"), "http://127.0.0.1:1", tmp_path)
    assert result.returncode == 2
    assert "no such directory" in result.stderr


def test_vllm_command_carries_our_options():
    options = ServeOptions(
        served_model_name="m",
        port=9000,
        max_model_len=4096,
        kv_cache_dtype="fp8",
        tensor_parallel_size=2,
        gpu_memory_utilization=0.8,
        extra_args=("--seed", "1"),
    )
    gpu = vllm_command(Path("/models/m"), "m", options, cpu=False)
    assert gpu[:4] == [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    flags = dict(zip(gpu[4::2], gpu[5::2], strict=True))
    assert flags["--model"] == "/models/m"
    assert flags["--max-model-len"] == "4096"
    assert flags["--kv-cache-dtype"] == "fp8"
    assert flags["--tensor-parallel-size"] == "2"
    assert flags["--gpu-memory-utilization"] == "0.8"
    assert flags["--served-model-name"] == "m"
    assert gpu[-2:] == ["--seed", "1"] and "--enforce-eager" not in gpu
    cpu = vllm_command(Path("/models/m"), "m", options, cpu=True)
    assert "--enforce-eager" in cpu and "--gpu-memory-utilization" not in cpu
    # vLLM's CPU rotary kernel misrotates MLA's strided query (launch.py): always off there.
    compilation = json.loads(cpu[cpu.index("--compilation-config") + 1])
    assert compilation["custom_ops"] == ["all", "-rotary_embedding"]
    assert "--compilation-config" not in gpu
    assert vllm_env(ServeOptions(cpu_kv_cache_gib=2), True, {})["VLLM_CPU_KVCACHE_SPACE"] == "2"


def test_icx_serve_refuses_a_latent_head_the_cpu_backend_lacks(tiny_hf_model, tmp_path):
    from infinitecontext.server.launch import on_cpu_build

    if not on_cpu_build():
        pytest.skip("vLLM's GPU build accepts other MLA head sizes")
    model = copy_model(tiny_hf_model, tmp_path / "model")
    (model / MANIFEST_NAME).unlink()
    config = json.loads((model / "config.json").read_text()) | {"kv_lora_rank": 64}
    (model / "config.json").write_text(json.dumps(config))
    result = run_icx_serve(str(model), "http://127.0.0.1:1", tmp_path / "cache")
    assert result.returncode == 2
    assert "CPU MLA backend needs kv_lora_rank 512" in result.stderr
