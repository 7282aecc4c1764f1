"""The three container images (docs/images.md): their tags agree with the CRD defaults
and the manifests, and each one built by `make images` runs: `icx --help`, the operator
imports, the trainer trains 2 steps of the tiny preset on CPU, and the server answers
/v1/completions on the model that training exported."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from plugins.processes import free_port

from infinitecontext.crds.models import (
    TRAINER_IMAGE,
    KubernetesOptions,
    Revision,
    ServedTemplate,
    ServerKubernetesOptions,
)
from infinitecontext.operator.inference import children
from infinitecontext.operator.resource import Resource
from infinitecontext.trainer import checkpoint

REPO = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
REGISTRY = "ghcr.io/infinitecontext"
TARGETS = ("operator", "trainer", "server")


def image(target: str) -> str:
    return f"{REGISTRY}/{target}:{VERSION}"


# ---------------------------------------------------------------- tags and users (fast)


def test_crd_defaults_are_the_version_tagged_images():
    assert image("trainer") == TRAINER_IMAGE == KubernetesOptions().image
    assert ServerKubernetesOptions().image == image("server")
    for path in (*REPO.glob("crds/*.yaml"), REPO / "deploy" / "crds.yaml"):
        assert ":latest" not in path.read_text(), path
    assert image("server") in (REPO / "crds/inferenceservices.infinitecontext.dev.yaml").read_text()


def test_inference_service_pods_default_to_the_server_image():
    """The trainer image has no vLLM: an InferenceService without kubernetes options
    still gets the server image."""
    revision = Revision(
        revision=1,
        model_version="1",
        started=datetime.now(UTC),
        outcome="Progressing",
        template=ServedTemplate(model_uri="models:/m/1"),
    )
    isvc = Resource("InferenceService", "svc", "ns", "uid", 1, {}, {})
    pod = children.deployment(isvc, children.STABLE, revision, 1, 600, "")["spec"]["template"]
    assert [c["image"] for c in pod["spec"]["containers"]] == [image("server")]


def test_operator_manifest_runs_the_image_tag_and_user_of_the_dockerfile():
    deployment = yaml.safe_load((REPO / "deploy/operator/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == image("operator")
    dockerfile = (REPO / "Dockerfile").read_text()
    users = set(re.findall(r"^USER (\d+)$", dockerfile, re.MULTILINE))
    assert users == {str(pod["securityContext"]["runAsUser"])}
    assert f"--uid {pod['securityContext']['runAsUser']} " in dockerfile


# ---------------------------------------------------------------- the built images (slow)


def unavailable(reason: str) -> None:
    """Skip, except under CI=true, where a missing prerequisite fails the test."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def images() -> dict[str, str]:
    """`make images` (cached: seconds when nothing changed); dockerd is left running."""
    if shutil.which("docker") is None or shutil.which("dockerd") is None:
        unavailable("no container runtime (docker.io): make images-prereqs installs it")
    if docker("info").returncode != 0 and os.geteuid() != 0:
        unavailable("dockerd is not running, and starting it needs root")
    if shutil.which("debootstrap") is None:
        unavailable("no debootstrap for the base image: make images-prereqs installs it")
    # The test environment's pip trusts a proxy's CA (PIP_CERT); the build needs it too.
    extra_ca = os.environ.get("PIP_CERT", "")
    done = subprocess.run(
        ["make", "-s", "images", f"IMAGES_EXTRA_CA={extra_ca}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return {target: image(target) for target in TARGETS}


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_image_runs_icx_help(images, target):
    done = docker("run", "--rm", "--entrypoint", "icx", images[target], "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: icx" in done.stdout


@pytest.mark.slow
def test_operator_image_imports_the_operator_without_torch(images):
    """As deploy/operator runs it: its uid, a read-only root filesystem."""
    script = (
        "import getpass, importlib.util, infinitecontext.operator.main;"
        "print(getpass.getuser(), importlib.util.find_spec('torch') is None)"
    )
    done = docker(
        "run", "--rm", "--read-only", "--user", "65532:65532", "--entrypoint", "python",
        images["operator"], "-c", script,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["icx", "True"]


@pytest.fixture(scope="module")
def trained_in_image(images, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 steps of the tiny preset on CPU in the trainer image; its output directory."""
    work = tmp_path_factory.mktemp("trainer-image")
    work.chmod(0o777)  # the image's user (uid 65532) writes here
    recipe = yaml.safe_load((REPO / "recipes" / "tiny-cpu.yaml").read_text())
    recipe["train"] |= {"steps": 2, "curriculum": [{"seq_len": 128, "until_step": 1}]}
    recipe["optim"]["warmup_steps"] = 1
    recipe["checkpoint"] = {"every_steps": 2, "keep": 1}
    (work / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    done = docker(
        "run", "--rm", "--network", "none", "--env", "OMP_NUM_THREADS=1",
        "--volume", f"{work}:/work", images["trainer"],
        "train", "sft", "--config", "/work/recipe.yaml", "--output-dir", "/work/out",
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return work / "out"


@pytest.mark.slow
def test_trainer_image_trains_two_steps(trained_in_image):
    last = checkpoint.complete_steps(trained_in_image / "checkpoints")[-1]
    assert last == checkpoint.step_dir(trained_in_image / "checkpoints", 2)
    assert (trained_in_image / "model" / "config.json").exists()


@pytest.fixture(scope="module")
def server_in_image(images, trained_in_image) -> Iterator[str]:
    """`icx serve` in the server image on the exported model, on the host network; vLLM
    needs more /dev/shm than docker's 64 MiB (the Deployment mounts a memory emptyDir)."""
    port = free_port()
    name = f"icx-test-server-{os.getpid()}"
    started = docker(
        "run", "--detach", "--name", name, "--network", "host", "--shm-size", "1g",
        "--volume", f"{trained_in_image / 'model'}:/model:ro", images["server"],
        "/model", "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", "2048", "--dtype", "bfloat16",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(name, f"{url}/v1/models", timeout=300)
        yield url
    finally:
        docker("rm", "--force", name)


def wait_until_serving(container: str, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            pass
        state = docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip()
        if state != "true":
            pytest.fail(f"the server container exited:\n{docker('logs', container).stderr[-4000:]}")
        time.sleep(2)
    pytest.fail(f"the server did not answer in {timeout} s:\n{docker('logs', container).stderr}")


@pytest.mark.slow
def test_server_image_answers_completions(server_in_image):
    body = json.dumps({"model": "tiny", "prompt": "The passkey is", "max_tokens": 4}).encode()
    request = urllib.request.Request(
        f"{server_in_image}/v1/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    assert answer["choices"][0]["finish_reason"] in {"length", "stop"}
    assert answer["usage"]["completion_tokens"] >= 1


@pytest.mark.slow
def test_server_image_runs_as_non_root(images):
    done = docker("image", "inspect", "--format", "{{.Config.User}}", images["server"])
    assert done.stdout.strip() == "65532"
