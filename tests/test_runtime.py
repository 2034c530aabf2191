"""The GPU runtime (launch/runtime.py) up to the GPU and the internet: a stand-in interpreter that plays the runtime's
python (its pip records every call, its probe reports what a CUDA torch would), a loopback HTTP server for
flash-attn's wheel host, and this repository's own CPU .venv for the interpreter that must be refused."""

import http.server
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from testkit import REPO

from launch import install, runtime
from launch.recipe import apply_overrides, load

BASE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"
TAG = "cp{}{}".format(*sys.version_info[:2])
CUDA_TORCH = "2.7.1+cu126"
WHEEL = f"flash_attn-2.8.3+cu12torch2.7cxx11abiTRUE-{TAG}-{TAG}-linux_x86_64.whl"

# The runtime venv's python, played by a script: `-m pip ...` is logged (with MAX_JOBS) and changes what is
# "installed" (fake-state.json); `-c ...` (the probe) reports it as a CUDA machine with 2 H100s would.
STAND_IN = r"""#!{python}
import importlib.metadata, json, os, platform, sys
from pathlib import Path
venv = Path(__file__).resolve().parents[1]
config = json.loads((venv / "fake-config.json").read_text())
state_file = venv / "fake-state.json"
state = json.loads(state_file.read_text()) if state_file.exists() else dict(config.get("state", {{}}))
args = sys.argv[1:]
if args[:2] == ["-m", "pip"]:
    with open(venv / "pip-log.jsonl", "a") as log:
        log.write(json.dumps({{"argv": args[2:], "MAX_JOBS": os.environ.get("MAX_JOBS")}}) + "\n")
    if config.get("fail_on") and config["fail_on"] in args:
        sys.exit(1)
    if args[2] == "uninstall":
        state.pop("flash_attn", None)
    elif "openrlhf==0.11.2" in args:
        state["openrlhf"] = "0.11.2"
    elif "vllm==0.29.0" in args:
        state.update(vllm="0.29.0", torch=config["torch"])
    elif any(a.endswith(".whl") or a == "flash-attn==2.8.3" for a in args):
        state["flash_attn"] = "2.8.3"
    state_file.write_text(json.dumps(state))
    sys.exit(0)
torch = state.get("torch")
cuda = torch.split("+cu")[1][:2] + "." + torch.split("+cu")[1][2:] if torch and "+cu" in torch else None
flash = state.get("flash_attn")
if flash and not config.get("flash_attn_breaks"):
    flash_facts = {{"installed": True, "version": flash, "reason": "imports"}}
elif flash:
    why = "flash-attn %s does not import (ImportError: flash_attn_2_cuda.so: undefined symbol)" % flash
    flash_facts = {{"installed": False, "version": None, "reason": why, "distribution": flash}}
else:
    flash_facts = {{"installed": False, "version": None, "reason": "not installed", "distribution": None}}
facts = {{
    "python": sys.argv[0], "python_version": platform.python_version(), "machine": "x86_64",
    "python_tag": "cp%d%d" % sys.version_info[:2], "vllm": state.get("vllm"), "openrlhf": state.get("openrlhf"),
    "openrlhf_requires": importlib.metadata.requires("openrlhf") if state.get("openrlhf") else None,
    "torch": torch, "cuda": cuda, "cuda_available": bool(cuda), "gpus": 2 if cuda else 0,
    "capability": config.get("capability", "9.0") if cuda else None, "cxx11abi": True, "flash_attn": flash_facts,
}}
print("some import warning")
print("RUNTIME-FACTS " + json.dumps(facts))
"""


def stand_in_venv(path: Path, torch=CUDA_TORCH, **config) -> Path:
    """A venv whose python is the stand-in; `state` is what is installed before the first pip call."""
    (path / "bin").mkdir(parents=True)
    (path / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {config.pop('version', platform.python_version())}\n")
    (path / "fake-config.json").write_text(json.dumps({"torch": torch, **config}))
    script = path / "bin" / "python"
    script.write_text(STAND_IN.format(python=sys.executable))
    script.chmod(0o755)
    return path


def pip_calls(venv: Path) -> list[dict]:
    log = venv / "pip-log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


class WheelHost(http.server.BaseHTTPRequestHandler):
    """Serves `assets` (path -> status): 200, or 302 to elsewhere as GitHub does; 404 for the rest."""

    assets: dict = {}
    requests: list = []

    def answer(self):
        self.requests.append((self.command, self.path))
        status = self.assets.get(self.path, 404)
        if status == 405 and self.command == "GET":
            status = 206
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/elsewhere/" + self.path.rsplit("/", 1)[-1])
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = answer

    def log_message(self, *args):
        pass


@pytest.fixture
def wheel_host():
    handler = type("Host", (WheelHost,), {"assets": {}, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/wheels/"
    yield handler
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch):
    """Nothing from this shell chooses a venv, a build or a wheel host; and no test ever reaches GitHub."""
    for name in (runtime.VENV_ENV, runtime.BUILD_ENV, "MAX_JOBS", "CUDA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(runtime.WHEELS_ENV, "http://127.0.0.1:9/nothing-listens-here/")


# ---- where ----------------------------------------------------------------------------------------------------------


def test_the_runtime_lives_in_its_own_venv_beside_the_test_one(monkeypatch, tmp_path):
    assert runtime.default_venv() == REPO / ".venv-gpu"
    monkeypatch.setenv(runtime.VENV_ENV, str(tmp_path / "gpu"))
    assert runtime.default_venv() == tmp_path / "gpu"
    assert runtime.python(tmp_path / "gpu") == str(tmp_path / "gpu/bin/python")
    assert runtime.ray_bin(tmp_path / "gpu") == str(tmp_path / "gpu/bin/ray")


def test_a_new_runtime_venv_has_our_base_python_and_none_of_the_test_venvs_packages(tmp_path):
    venv = tmp_path / "gpu"
    install.create_venv(venv)
    code = "import importlib.util, json, sys; print(json.dumps([sys.base_prefix, importlib.util.find_spec('torch')]))"
    done = subprocess.run([runtime.python(venv), "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [sys.base_prefix, None]  # our base Python; the CPU torch of .venv not seen


# ---- the flash-attn wheel -----------------------------------------------------------------------------------------


def test_the_wheel_name_follows_flash_attns_release_assets():
    facts = {"torch": "2.7.1+cu126", "cuda": "12.6", "cxx11abi": True, "python_tag": "cp311", "machine": "x86_64"}
    name = install.wheel_name("2.8.3", facts)
    assert name == "flash_attn-2.8.3+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl"
    other = {**facts, "torch": "2.6.0", "cuda": "11.8", "cxx11abi": False, "python_tag": "cp310"}
    assert (
        install.wheel_name("2.8.3", other) == "flash_attn-2.8.3+cu11torch2.6cxx11abiFALSE-cp310-cp310-linux_x86_64.whl"
    )


def test_a_cpu_torch_has_no_wheel():
    facts = {"torch": "2.13.0+cpu", "cuda": None, "cxx11abi": True, "python_tag": "cp311", "machine": "x86_64"}
    assert install.wheel_name("2.8.3", facts) is None


def test_the_wheel_host_is_asked_with_a_head_and_the_file_is_never_fetched(wheel_host):
    wheel_host.assets = {"/wheels/there.whl": 200, "/wheels/moved.whl": 302}
    assert install.wheel_available(wheel_host.url + "there.whl") == (True, "HTTP 200")
    assert install.wheel_available(wheel_host.url + "moved.whl")[0] is True
    assert install.wheel_available(wheel_host.url + "absent.whl") == (False, "HTTP 404")
    assert wheel_host.requests == [
        ("HEAD", "/wheels/there.whl"),
        ("HEAD", "/wheels/moved.whl"),
        ("HEAD", "/wheels/absent.whl"),
    ]


def test_a_host_that_refuses_head_is_asked_for_one_byte(wheel_host):
    wheel_host.assets = {"/wheels/x.whl": 405}
    assert install.wheel_available(wheel_host.url + "x.whl")[0] is True
    assert [m for m, _ in wheel_host.requests] == ["HEAD", "GET"]


def test_an_unreachable_host_means_no_wheel():
    found, answer = install.wheel_available("http://127.0.0.1:9/x.whl", timeout=5)
    assert not found and answer.startswith("unreachable")


# ---- install --------------------------------------------------------------------------------------------------------


def test_openrlhf_goes_in_without_deps_and_nothing_pulls_flash_attn():
    specs = install.runtime_specs(
        runtime._read_requirements(runtime.REQUIREMENTS), importlib.metadata.requires("openrlhf")
    )
    names = [s.split("[")[0].split("=")[0].split(">")[0].split(";")[0] for s in specs]
    assert "flash-attn" not in names and "openrlhf" not in names and "ring-flash-attn" not in names
    for pin in ("vllm==0.29.0", "deepspeed==0.19.6", "transformers==5.15.0", "ray[default]==2.55.0"):
        assert pin in specs
    assert {"peft", "einops", "accelerate", "torch"} <= set(names)  # openrlhf's own, read from its metadata


def test_a_matching_wheel_is_installed_and_recorded(tmp_path, monkeypatch, wheel_host):
    venv = stand_in_venv(tmp_path / "gpu")
    wheel_host.assets = {f"/wheels/{WHEEL}": 200}
    monkeypatch.setenv(runtime.WHEELS_ENV, wheel_host.url)
    manifest = install.install(venv)
    calls = [c["argv"] for c in pip_calls(venv)]
    assert calls[1] == ["install", "--no-deps", "openrlhf==0.11.2"]
    assert "vllm==0.29.0" in calls[2] and not any("flash" in a for a in calls[2])
    assert calls[3] == ["install", "--no-deps", wheel_host.url + WHEEL]
    assert manifest["flash_attn"]["installed"] and manifest["flash_attn"]["source"] == wheel_host.url + WHEEL
    assert manifest["attn_implementation"] == "flash_attention_2" and manifest["torch"] == CUDA_TORCH
    assert runtime.read_manifest(venv) == manifest
    assert (venv / ".gitignore").read_text() == "*\n"


def test_without_a_wheel_flash_attn_is_left_out_and_the_manifest_says_why(tmp_path, monkeypatch, wheel_host):
    venv = stand_in_venv(tmp_path / "gpu", torch="2.11.0+cu129")
    monkeypatch.setenv(runtime.WHEELS_ENV, wheel_host.url)
    manifest = install.install(venv)
    assert not any("flash" in a for c in pip_calls(venv) for a in c["argv"])
    flash = manifest["flash_attn"]
    assert not flash["installed"] and manifest["attn_implementation"] == "sdpa"
    assert f"flash_attn-2.8.3+cu12torch2.11cxx11abiTRUE-{TAG}-{TAG}-linux_x86_64.whl" in flash["reason"]
    assert "HTTP 404" in flash["reason"]


def test_the_install_runs_once_per_content(tmp_path):
    venv = stand_in_venv(tmp_path / "gpu")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(runtime.REQUIREMENTS.read_text())
    install.install(venv, requirements=requirements)
    first = len(pip_calls(venv))
    install.install(venv, requirements=requirements)
    assert len(pip_calls(venv)) == first
    requirements.write_text(requirements.read_text() + "sentencepiece\n")
    install.install(venv, requirements=requirements)
    assert len(pip_calls(venv)) > first and "sentencepiece" in pip_calls(venv)[-1]["argv"]


def test_a_failed_install_claims_nothing_and_says_what_to_do(tmp_path):
    venv = stand_in_venv(tmp_path / "gpu", fail_on="sentencepiece")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(runtime.REQUIREMENTS.read_text())
    install.install(venv, requirements=requirements)  # succeeds: nothing asks for sentencepiece yet
    assert runtime.read_manifest(venv)
    requirements.write_text(requirements.read_text() + "sentencepiece\n")
    with pytest.raises(runtime.InstallError) as error:
        install.install(venv, requirements=requirements)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("installing the GPU runtime failed at requirements.txt and openrlhf's requirements")
    assert "nothing is recorded as installed" in message
    assert runtime.read_manifest(venv) is None
    assert not (venv / runtime.MANIFEST).exists() and not list(venv.glob(".runtime-*"))


def test_a_cpu_torch_from_pip_fails_the_install(tmp_path):
    venv = stand_in_venv(tmp_path / "gpu", torch="2.11.0+cpu")
    with pytest.raises(runtime.InstallError, match="a build without CUDA"):
        install.install(venv, pip_args=["--index-url", "https://download.pytorch.org/whl/cpu"])
    assert runtime.read_manifest(venv) is None


def test_a_venv_made_by_another_python_is_refused_before_pip_runs(tmp_path):
    venv = stand_in_venv(tmp_path / "gpu", version="3.10.4")
    with pytest.raises(runtime.InstallError, match="made with Python 3.10.4"):
        install.install(venv)
    assert pip_calls(venv) == []


def test_a_wheel_that_does_not_import_is_removed_and_sdpa_recorded(tmp_path, monkeypatch, wheel_host):
    venv = stand_in_venv(tmp_path / "gpu", flash_attn_breaks=True)
    wheel_host.assets = {f"/wheels/{WHEEL}": 200}
    monkeypatch.setenv(runtime.WHEELS_ENV, wheel_host.url)
    manifest = install.install(venv)
    assert pip_calls(venv)[-1]["argv"] == ["uninstall", "-y", "flash-attn"]
    assert not manifest["flash_attn"]["installed"] and "does not import" in manifest["flash_attn"]["reason"]
    assert manifest["attn_implementation"] == "sdpa"


def test_a_flash_attn_left_over_for_another_torch_is_removed(tmp_path):
    venv = stand_in_venv(tmp_path / "gpu", flash_attn_breaks=True, state={"flash_attn": "2.8.3"})
    manifest = install.install(venv)
    assert ["uninstall", "-y", "flash-attn"] in [c["argv"] for c in pip_calls(venv)]
    assert not manifest["flash_attn"]["installed"]


def test_a_working_flash_attn_is_kept(tmp_path):
    venv = stand_in_venv(tmp_path / "gpu", state={"flash_attn": "2.8.3"})
    manifest = install.install(venv)
    assert not any("flash" in a for c in pip_calls(venv) for a in c["argv"])
    assert manifest["flash_attn"]["installed"] and manifest["flash_attn"]["source"] == "already installed"


def test_another_working_flash_attn_is_kept_when_no_wheel_replaces_it(tmp_path):
    venv = stand_in_venv(tmp_path / "gpu", state={"flash_attn": "2.7.4"})
    flash = install.install(venv)["flash_attn"]
    assert flash["installed"] and flash["version"] == "2.7.4" and "pins 2.8.3" in flash["source"]


def test_building_needs_the_cuda_toolkit(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(install, "DEFAULT_CUDA_HOME", str(tmp_path / "no-cuda"))
    venv = stand_in_venv(tmp_path / "gpu")
    with pytest.raises(runtime.InstallError, match="needs the CUDA toolkit"):
        install.install(venv, build_flash_attn=True)
    assert not any("--no-build-isolation" in c["argv"] for c in pip_calls(venv))


def test_building_installs_its_tools_first_and_bounds_the_jobs(tmp_path, monkeypatch, capsys):
    cuda = tmp_path / "cuda"
    (cuda / "bin").mkdir(parents=True)
    script(cuda / "bin" / "nvcc", "#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("CUDA_HOME", str(cuda))
    monkeypatch.setenv("MAX_JOBS", "512")
    monkeypatch.setenv(runtime.BUILD_ENV, "1")
    venv = stand_in_venv(tmp_path / "gpu", torch="2.11.0+cu129")
    manifest = install.install(venv)
    calls = pip_calls(venv)
    assert calls[-2]["argv"] == ["install", "wheel", "ninja", "packaging", "psutil"]
    assert calls[-1]["argv"] == ["install", "--no-build-isolation", "--no-deps", "flash-attn==2.8.3"]
    assert 1 <= int(calls[-1]["MAX_JOBS"]) <= (os.cpu_count() or 1)
    assert "WARNING: building flash-attn 2.8.3 from source" in capsys.readouterr().out
    assert manifest["flash_attn"]["installed"] and manifest["flash_attn"]["source"].startswith("built from source")


# ---- the job's interpreter ------------------------------------------------------------------------------------------


def test_the_test_venvs_cpu_torch_cannot_run_the_job():
    python = str(REPO / ".venv" / "bin" / "python")
    if not Path(python).exists():
        pytest.skip("runs with make test's .venv")
    checks = runtime.interpreter_checks(python)
    lines = [c.line() for c in checks if c.status == "FAIL"]
    assert any("+cpu, a CPU-only build: install the GPU runtime with `make train` on a GPU node" in x for x in lines)
    assert any("has no vllm" in line for line in lines)


def test_a_flash_attn_that_kills_the_interpreter_is_reported_not_installed(tmp_path):
    python = str(REPO / ".venv" / "bin" / "python")
    if not Path(python).exists():
        pytest.skip("runs with make test's .venv")
    site = tmp_path / "site"
    (site / "flash_attn").mkdir(parents=True)
    (site / "flash_attn" / "__init__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    (site / "flash_attn-2.8.3.dist-info").mkdir()
    (site / "flash_attn-2.8.3.dist-info" / "METADATA").write_text("Name: flash-attn\nVersion: 2.8.3\n")
    stand_in = script(tmp_path / "python", f'#!/bin/sh\nPYTHONPATH={site} exec {python} "$@"\n')
    facts = runtime.probe(stand_in)
    assert facts["torch"] == importlib.metadata.version("torch")  # what came before the crash is kept
    assert facts["flash_attn"] == {
        "installed": False,
        "version": None,
        "reason": "flash-attn 2.8.3 crashed the interpreter on import",
        "distribution": "2.8.3",
    }


def test_an_interpreter_with_cuda_torch_and_the_runtime_passes(tmp_path):
    state = {"torch": CUDA_TORCH, "vllm": "0.29.0", "openrlhf": "0.11.2", "flash_attn": "2.8.3"}
    venv = stand_in_venv(tmp_path / "gpu", state=state)
    checks = runtime.interpreter_checks(runtime.python(venv))
    assert [c.status for c in checks] == ["ok"], [c.line() for c in checks]
    assert "torch 2.7.1+cu126 (CUDA 12.6, 2 GPUs), vllm 0.29.0, openrlhf 0.11.2, flash-attn 2.8.3" in checks[0].message


def test_a_cuda_torch_that_sees_no_gpu_fails(tmp_path):
    facts = {"torch": CUDA_TORCH, "cuda": "12.6", "cuda_available": False, "vllm": "0.29.0", "openrlhf": "0.11.2"}
    python = script(tmp_path / "python", f"#!/bin/sh\necho 'RUNTIME-FACTS {json.dumps(facts)}'\n")
    (check,) = runtime.interpreter_checks(python)
    assert check.status == "FAIL" and "sees no GPU" in check.message


@pytest.mark.parametrize(
    "body, expected",
    [
        ("echo 'libcudart.so.12: cannot open shared object file' >&2; exit 1", "libcudart.so.12: cannot open"),
        ("exec sleep 60", "did not report within 0.5 s"),
    ],
)
def test_an_interpreter_that_cannot_report_fails_with_the_fix(tmp_path, body, expected):
    python = script(tmp_path / "python", f"#!/bin/sh\n{body}\n")
    (check,) = runtime.interpreter_checks(python, timeout=0.5)
    assert check.status == "FAIL" and expected in check.message and "or pass --python" in check.message


def test_a_missing_interpreter_fails_with_the_fix(tmp_path):
    (check,) = runtime.interpreter_checks(str(tmp_path / "nowhere" / "python"))
    assert check.status == "FAIL" and "does not exist" in check.message and "make train" in check.message


# ---- attention ------------------------------------------------------------------------------------------------------

NO_FLASH = {"flash_attn": {"installed": False, "reason": "no prebuilt wheel for torch 2.11"}, "capability": "9.0"}
FLASH = {"flash_attn": {"installed": True, "version": "2.8.3"}, "capability": "9.0"}


def args(*overrides):
    return apply_overrides(load(BASE), list(overrides)).args()


def test_without_flash_attn_the_default_attention_becomes_sdpa_with_a_warning():
    parsed = args()
    assert parsed.ds.attn_implementation == "flash_attention_2"
    (check,) = runtime.attention_checks(parsed, NO_FLASH)
    assert check.status == "warn" and "flash-attn not installed" in check.message and "uses sdpa" in check.message
    assert runtime.attention_override(parsed, NO_FLASH) == {"ds.attn_implementation": "sdpa"}


def test_the_override_passes_openrlhfs_parser():
    override = runtime.attention_override(args(), NO_FLASH)
    parsed = args(*(f"{k}={v}" for k, v in override.items()))
    assert parsed.ds.attn_implementation == "sdpa"
    assert runtime.attention_override(parsed, NO_FLASH) is None


@pytest.mark.parametrize("overrides", [["ds.packing_samples=true"], ["train.dynamic_batch_enable=true"]])
def test_packing_without_flash_attn_fails_with_the_fix(overrides):
    parsed = args(*overrides)
    (check,) = runtime.attention_checks(parsed, NO_FLASH)
    assert check.status == "FAIL" and "turn packing off" in check.message and "FLASH_ATTN_BUILD=1" in check.message
    assert runtime.attention_override(parsed, NO_FLASH) is None


def test_with_flash_attn_nothing_changes():
    parsed = args("ds.packing_samples=true")
    assert [c.status for c in runtime.attention_checks(parsed, FLASH)] == ["ok"]
    assert runtime.attention_override(args(), FLASH) is None


def test_gpus_older_than_ampere_get_sdpa_even_with_flash_attn():
    old = {**FLASH, "capability": "7.5"}
    assert runtime.attention_override(args(), old) == {"ds.attn_implementation": "sdpa"}
    assert "compute capability 7.5" in runtime.attention_checks(args(), old)[0].message


def test_a_recipe_that_chose_sdpa_is_left_alone():
    parsed = args("ds.attn_implementation=sdpa")
    assert [c.status for c in runtime.attention_checks(parsed, NO_FLASH)] == ["ok"]
    assert runtime.attention_override(parsed, NO_FLASH) is None


def test_the_runtime_venv_is_kept_out_of_rays_working_dir_upload(tmp_path):
    from ray._private.runtime_env.packaging import _dir_travel

    repo = tmp_path / "repo"
    (repo / "launch").mkdir(parents=True)
    (repo / "launch" / "x.py").write_text("")
    venv = stand_in_venv(repo / ".venv-gpu")
    install.install(venv)
    shipped = []
    _dir_travel(repo, [], shipped.append, include_gitignore=True)
    assert repo / "launch" / "x.py" in shipped
    assert not [p for p in shipped if venv in p.parents], shipped


# ---- by hand --------------------------------------------------------------------------------------------------------


def test_install_by_hand_passes_pip_arguments_to_every_pip_install(tmp_path):
    venv = stand_in_venv(tmp_path / "gpu")
    assert runtime.main(["install", "--venv", str(venv), "--pip-args=--index-url http://127.0.0.1:9/simple"]) == 0
    installs = [c["argv"] for c in pip_calls(venv) if c["argv"][0] == "install"]
    assert len(installs) == 3 and all(c[1:3] == ["--index-url", "http://127.0.0.1:9/simple"] for c in installs)
    assert runtime.read_manifest(venv)["pip_args"] == ["--index-url", "http://127.0.0.1:9/simple"]


def test_check_by_hand_exits_1_on_a_failure(tmp_path, capsys):
    state = {"torch": CUDA_TORCH, "vllm": "0.29.0", "openrlhf": "0.11.2"}
    good = stand_in_venv(tmp_path / "good", state=state)
    assert runtime.main(["check", "--venv", str(good)]) == 0
    assert runtime.main(["check", "--venv", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().out


def test_pip_arguments_are_shown_and_saved_without_passwords():
    args = ["--index-url", "https://user:s3cret@pypi.example/simple", "--extra-index-url", "https://pypi.example/x"]
    assert install.masked_args(args) == [
        "--index-url",
        "https://user:***@pypi.example/simple",
        "--extra-index-url",
        "https://pypi.example/x",
    ]
