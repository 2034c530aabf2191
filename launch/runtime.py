"""The GPU runtime: OpenRLHF 0.11.2, vLLM and DeepSpeed in a virtual environment of their own, installed once.

    python -m launch.runtime install                    # into .venv-gpu (RUNTIME_VENV=... or --venv elsewhere)
    python -m launch.runtime install --build-flash-attn # build flash-attn from source when no wheel fits (hours)
    python -m launch.runtime check [--python PATH]      # can this interpreter run the job? (default: the runtime's)

`make train` installs it on first use (the launcher calls `install`); on a cluster, run `install` on every node
at the same path and pass `--python <venv>/bin/python`. FLASH_ATTN_WHEELS=URL takes flash-attn's wheels from a
mirror, FLASH_ATTN_BUILD=1 is --build-flash-attn. The steps, with the launcher's base Python (`make test`'s):

    python3 -m venv .venv-gpu
    .venv-gpu/bin/python -m pip install --no-deps openrlhf==0.11.2  # its flash-attn pin would build from source
    .venv-gpu/bin/python -m pip install vllm==0.29.0 ...            # requirements.txt and openrlhf's own
                                                                    # requirements without flash-attn
    .venv-gpu/bin/python -m pip install --no-deps URL               # flash-attn 2.8.3's prebuilt wheel for the
                                                                    # torch, CUDA, C++ ABI and Python, if any

Without a matching wheel, flash-attn is left out and a recipe that asks for flash_attention_2 trains with
`--ds.attn_implementation sdpa` (the launcher's `attention_override`), which OpenRLHF supports while
`ds.packing_samples` is off; with packing on, preflight fails with the fix (`attention_checks`). What was
installed, and why flash-attn was or was not, is recorded in `<venv>/runtime.json`; the stamp
`<venv>/.runtime-<key>` (a hash of what is installed) makes the next run skip the install. Both are removed when
an install starts and written only when it has succeeded, so a failed install claims nothing and is retried.
The test environment (`.venv`, CPU torch) and this one never share packages; `interpreter_checks` refuses a
job's interpreter that cannot train (a CPU-only torch, no openrlhf or vLLM) before anything is submitted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from launch.check import Check, fail, failed, ok, warn
from reward_funcs import cli
from reward_funcs.cli import REPO, UsageError

DEFAULT_VENV = REPO / ".venv-gpu"
REQUIREMENTS = REPO / "requirements.txt"
VENV_ENV = "RUNTIME_VENV"
BUILD_ENV = "FLASH_ATTN_BUILD"
WHEELS_ENV = "FLASH_ATTN_WHEELS"
DEFAULT_WHEELS = "https://github.com/Dao-AILab/flash-attention/releases/download/v{version}/"
MANIFEST = "runtime.json"
# Part of the install's key: raise it when the steps below change, so that existing runtimes are redone.
STEPS_VERSION = 1
WHEEL_TIMEOUT = 10  # seconds for the wheel host to answer a HEAD
PROBE_TIMEOUT = 60  # seconds for an interpreter to import torch and report
DEFAULT_CUDA_HOME = "/usr/local/cuda"
BUILD_MAX_JOBS = 4  # flash-attn's advice below 96 GB of RAM: each nvcc job takes several GB
FLASH_ATTN = "flash-attn"
INSTALL_HINT = "install the GPU runtime with `make train` on a GPU node, or `python -m launch.runtime install`"


class InstallError(UsageError):
    """The install failed: one line saying at which step and what to do. Nothing is recorded as installed."""


class ProbeError(UsageError):
    """An interpreter could not be run or did not report."""


# ---- where ------------------------------------------------------------------------------------------------------


def default_venv() -> Path:
    """RUNTIME_VENV when set, else .venv-gpu in the repository."""
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV).absolute()


def python(venv: str | Path) -> str:
    """The runtime's interpreter: the job's entrypoint runs it."""
    return str(Path(venv).absolute() / "bin" / "python")


def ray_bin(venv: str | Path) -> str:
    """The runtime's `ray`: a local head started with it runs its workers in the runtime."""
    return str(Path(venv).absolute() / "bin" / "ray")


# ---- what an interpreter has --------------------------------------------------------------------------------------

FACTS_MARK = "RUNTIME-FACTS "
# Runs in the interpreter under test, which may lack any of these packages; prints one line of JSON.
PROBE = r"""
import importlib.metadata, json, platform, sys
def version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
facts = {"python": sys.executable, "python_version": platform.python_version(), "machine": platform.machine(),
         "python_tag": "cp%d%d" % sys.version_info[:2], "vllm": version("vllm"), "openrlhf": version("openrlhf"),
         "openrlhf_requires": importlib.metadata.requires("openrlhf") if version("openrlhf") else None}
try:
    import torch
    cuda = torch.cuda.is_available()
    facts.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=cuda,
                 gpus=torch.cuda.device_count() if cuda else 0,
                 capability=".".join(map(str, min(torch.cuda.get_device_capability(i)
                                                  for i in range(torch.cuda.device_count())))) if cuda else None,
                 cxx11abi=bool(torch._C._GLIBCXX_USE_CXX11_ABI))
except Exception as e:
    facts.update(torch=None, torch_error="%s: %s" % (type(e).__name__, e), cuda=None, cuda_available=False, gpus=0,
                 capability=None, cxx11abi=None)
found = version("flash-attn")
# Reported first as if importing it crashes: a flash_attn built for another torch can kill the interpreter.
why = "not installed" if found is None else "flash-attn %s crashed the interpreter on import" % found
facts["flash_attn"] = {"installed": False, "version": None, "reason": why, "distribution": found}
print("RUNTIME-FACTS " + json.dumps(facts), flush=True)
try:
    import flash_attn
    facts["flash_attn"] = {"installed": True, "version": flash_attn.__version__, "reason": "imports"}
except Exception as e:
    if found is not None:
        facts["flash_attn"]["reason"] = "flash-attn %s does not import (%s: %s)" % (found, type(e).__name__, e)
print("RUNTIME-FACTS " + json.dumps(facts))
"""


def _clean_env(**extra: str) -> dict:
    """This shell's environment for the runtime's interpreter, without what would mix another Python's packages in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def probe(python: str, timeout: float = PROBE_TIMEOUT) -> dict:
    """What `python` has: Python, torch and CUDA, GPUs, vllm, openrlhf, flash_attn (the manifest's keys)."""
    command = [os.path.abspath(python) if os.sep in python else python, "-c", PROBE]
    try:  # from / so that no folder of the current directory shadows a package
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_clean_env(), cwd="/")
    except FileNotFoundError:
        raise ProbeError(f"{python} does not exist") from None
    except PermissionError:
        raise ProbeError(f"{python} is not executable") from None
    except subprocess.TimeoutExpired:
        raise ProbeError(f"{python} did not report within {timeout:g} s (importing torch hung)") from None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(FACTS_MARK):
            return json.loads(line[len(FACTS_MARK) :])
    last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}, no report"])[-1]
    raise ProbeError(f"{python} could not report what it has: {last}")


def interpreter_checks(python: str, timeout: float = PROBE_TIMEOUT) -> list[Check]:
    """Whether `python` can run the job: a CUDA build of torch that sees a GPU, openrlhf 0.11.2 and vLLM. Each
    problem is a FAIL with the fix; all is well in one `ok` line."""
    fix = f"{INSTALL_HINT} (into {DEFAULT_VENV.name}), or pass --python"
    try:
        facts = probe(python, timeout)
    except ProbeError as e:
        return [fail("runtime", f"the job's interpreter: {e}: {fix}")]
    return _facts_checks(python, facts, fix)


def _facts_checks(python: str, facts: dict, fix: str) -> list[Check]:
    torch = facts.get("torch")
    checks = []
    if torch is None:
        checks.append(
            fail("runtime", f"the job's interpreter {python} has no torch ({facts.get('torch_error')}): {fix}")
        )
    elif "+cpu" in torch or not facts.get("cuda"):
        checks.append(fail("runtime", f"the job's interpreter {python} has torch {torch}, a CPU-only build: {fix}"))
    elif not facts.get("cuda_available"):
        checks.append(
            fail(
                "runtime",
                f"torch {torch} in {python} sees no GPU (torch.cuda.is_available() is False): check the driver "
                "with nvidia-smi and CUDA_VISIBLE_DEVICES",
            )
        )
    pins = _pins(_read_requirements(REQUIREMENTS))
    for name in ("openrlhf", "vllm"):
        found, wanted = facts.get(name), pins.get(name)
        if found is None:
            checks.append(fail("runtime", f"the job's interpreter {python} has no {name}: {fix}"))
        elif wanted and found != wanted:
            checks.append(warn("runtime", f"{python} has {name} {found}; this project runs {name} {wanted}"))
    if checks:
        return checks
    flash = facts["flash_attn"]
    attention = f"flash-attn {flash['version']}" if flash["installed"] else f"flash-attn: {flash['reason']}"
    return [
        ok(
            "runtime",
            f"{python}: Python {facts['python_version']}, torch {torch} (CUDA {facts['cuda']}, {facts['gpus']} "
            f"GPUs), vllm {facts['vllm']}, openrlhf {facts['openrlhf']}, {attention}",
        )
    ]


# ---- attention: flash-attn when installed, else sdpa ---------------------------------------------------------------


def _flash_attn_usable(facts: dict) -> tuple[bool, str]:
    flash = facts["flash_attn"]
    if not flash["installed"]:
        return False, flash["reason"]
    capability = facts.get("capability")
    if capability and Version(capability) < Version("8.0"):
        return False, f"the GPUs have compute capability {capability}, flash-attn 2 needs 8.0 (Ampere) or newer"
    return True, f"flash-attn {flash['version']} installed"


def attention_override(args, facts: dict | None) -> dict | None:
    """The flags the launcher sets for this run, {"ds.attn_implementation": "sdpa"}, when the recipe asks for
    flash_attention_2 (OpenRLHF's default), the runtime cannot run it, and packing is off; None otherwise.
    `args` is OpenRLHF's parsed arguments (Recipe.args()); `facts` the manifest, or `probe`'s answer."""
    if facts is None or args.ds.attn_implementation != "flash_attention_2" or args.ds.packing_samples:
        return None
    return None if _flash_attn_usable(facts)[0] else {"ds.attn_implementation": "sdpa"}


def attention_checks(args, facts: dict | None) -> list[Check]:
    """Whether the runtime can run the recipe's attention: warns when the launcher switches it to sdpa, FAILs
    when packing needs flash-attn and the runtime has none. No finding without facts (a remote cluster)."""
    if facts is None:
        return []
    wanted = args.ds.attn_implementation
    usable, why = _flash_attn_usable(facts)
    if wanted != "flash_attention_2" or usable:
        return [ok("attn", f"ds.attn_implementation {wanted}" + (f" ({why})" if wanted == "flash_attention_2" else ""))]
    if args.ds.packing_samples:
        return [
            fail(
                "attn",
                f"ds.packing_samples (set, or turned on by train.dynamic_batch_enable or ds.ring_attn_size > 1) needs "
                f"flash-attn, which this runtime cannot use ({why}): turn packing off, or build flash-attn with "
                f"`{BUILD_ENV}=1 make train ...` (hours)",
            )
        ]
    state = "not usable" if facts["flash_attn"]["installed"] else "not installed"
    return [
        warn(
            "attn",
            f"flash-attn {state} ({why}): training uses sdpa (the launcher sets ds.attn_implementation=sdpa "
            f"for this run); for flash-attn set {WHEELS_ENV} to a wheel mirror or {BUILD_ENV}=1 (builds for hours)",
        )
    ]


# ---- the flash-attn wheel ------------------------------------------------------------------------------------------


def wheel_name(version: str, facts: dict) -> str | None:
    """flash-attn's release asset for this torch (major.minor), CUDA major, C++11 ABI and Python; None when torch
    has no CUDA."""
    if not facts.get("torch") or not facts.get("cuda"):
        return None
    torch = Version(facts["torch"])
    abi = "TRUE" if facts["cxx11abi"] else "FALSE"
    cuda = facts["cuda"].split(".")[0]
    tag, machine = facts["python_tag"], facts["machine"]
    return f"flash_attn-{version}+cu{cuda}torch{torch.major}.{torch.minor}cxx11abi{abi}-{tag}-{tag}-linux_{machine}.whl"


def wheels_url(version: str) -> str:
    """Where flash-attn's wheels are: FLASH_ATTN_WHEELS, else the release's download folder."""
    return (os.environ.get(WHEELS_ENV) or DEFAULT_WHEELS.format(version=version)).rstrip("/") + "/"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect answers the question (GitHub sends downloads elsewhere): never fetch the file


def wheel_available(url: str, timeout: float = WHEEL_TIMEOUT) -> tuple[bool, str]:
    """(whether `url` exists, the host's answer), from a HEAD; a GET of one byte when HEAD is not allowed."""
    opener = urllib.request.build_opener(_NoRedirect)
    for request in (
        urllib.request.Request(url, method="HEAD"),
        urllib.request.Request(url, headers={"Range": "bytes=0-0"}),
    ):
        try:
            with opener.open(request, timeout=timeout) as response:
                return True, f"HTTP {getattr(response, 'status', 200)}"
        except urllib.error.HTTPError as e:
            if 300 <= e.code < 400:
                return True, f"HTTP {e.code}, a redirect"
            if e.code != 405:
                return False, f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            return False, f"unreachable: {getattr(e, 'reason', e)}"
    return False, "HTTP 405"


# ---- install --------------------------------------------------------------------------------------------------------


def _read_requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _pins(requirements: list[Requirement]) -> dict[str, str]:
    return {canonicalize_name(r.name): s.version for r in requirements for s in r.specifier if s.operator == "=="}


def _spec(req: Requirement) -> str:
    """`req` as a pip argument: name, extras and version, without a marker (already evaluated)."""
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"


def runtime_specs(requirements: list[Requirement], openrlhf_requires: list[str]) -> list[str]:
    """What pip installs after openrlhf itself: requirements.txt and openrlhf's own requirements (its `vllm` extra
    included), without openrlhf (installed with --no-deps) and flash-attn (a wheel, a build, or nothing)."""
    skip = {"openrlhf", FLASH_ATTN}
    specs = [str(r) for r in requirements if canonicalize_name(r.name) not in skip]
    for text in openrlhf_requires:
        req = Requirement(text)
        if canonicalize_name(req.name) not in skip and (req.marker is None or req.marker.evaluate({"extra": "vllm"})):
            specs.append(_spec(req))
    return list(dict.fromkeys(specs))


def install_key(requirements: Path, build_flash_attn: bool, wheels: str, pip_args: list[str]) -> str:
    """A hash of everything the install depends on: a change to any of them redoes it."""
    content = {
        "steps": STEPS_VERSION,
        "requirements": Path(requirements).read_text(),
        "build": build_flash_attn,
        "wheels": wheels,
        "pip_args": list(pip_args),
        "python": platform.python_version(),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def read_manifest(venv: str | Path) -> dict | None:
    """The last successful install's record, None when there is none (or it did not finish)."""
    try:
        manifest = json.loads((Path(venv) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if (Path(venv) / f".runtime-{manifest.get('key')}").exists() else None


def _forget(venv: Path) -> None:
    """No stamp and no manifest: from here until success, nothing claims the runtime is installed."""
    for stamp in venv.glob(".runtime-*"):
        stamp.unlink()
    (venv / MANIFEST).unlink(missing_ok=True)


def _run(step: str, command: list[str], venv: Path, fix: str = "", **env: str) -> None:
    print(f"runtime: {step}: {' '.join(command[1:])}", flush=True)
    status = subprocess.run(command, env=_clean_env(**env)).returncode
    if status:
        raise InstallError(
            f"installing the GPU runtime failed at {step} (exit status {status}, output above): "
            f"{fix or 'fix what pip reports and run again'}; nothing is recorded as installed and the next run "
            f"retries (remove {venv} if it keeps failing)"
        )


@contextlib.contextmanager
def _locked(venv: Path):
    """One install at a time per runtime: a second launcher waits, then finds it done."""
    venv.mkdir(parents=True, exist_ok=True)
    (venv / ".gitignore").write_text("*\n")  # git, ruff and Ray's working_dir upload all skip the runtime
    with open(venv / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def create_venv(venv: Path) -> None:
    """A virtual environment at `venv` with this interpreter's base Python (not this venv's packages)."""
    base = getattr(sys, "_base_executable", sys.executable)
    fix = f"{base} cannot make a venv (on Debian/Ubuntu: apt-get install python3-venv)"
    _run("creating the runtime's venv", [base, "-m", "venv", str(venv)], venv, fix)


def _check_base(venv: Path) -> None:
    cfg = venv / "pyvenv.cfg"
    if not cfg.exists():
        raise InstallError(f"{venv} exists but is not a virtual environment: remove it, or set {VENV_ENV} elsewhere")
    found = dict(map(str.strip, line.split("=", 1)) for line in cfg.read_text().splitlines() if "=" in line)
    version = found.get("version", found.get("version_info", ""))
    if version.split(".")[:2] != platform.python_version().split(".")[:2]:
        raise InstallError(
            f"{venv} was made with Python {version}, the launcher runs {platform.python_version()}: remove it "
            "(`rm -rf` it) and run again"
        )


def _max_jobs() -> int:
    try:
        wanted = int(os.environ.get("MAX_JOBS", BUILD_MAX_JOBS))
    except ValueError:
        wanted = BUILD_MAX_JOBS
    return max(1, min(wanted, os.cpu_count() or 1))


def _nvcc() -> str | None:
    homes = [os.environ.get("CUDA_HOME"), DEFAULT_CUDA_HOME]  # where torch's extension builder looks too
    for candidate in [shutil.which("nvcc"), *(f"{home}/bin/nvcc" for home in homes if home)]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _build_flash_attn(pip: list[str], version: str, venv: Path) -> str:
    if not _nvcc():
        raise InstallError(
            f"building flash-attn needs the CUDA toolkit (nvcc on PATH, or CUDA_HOME): install it, or unset "
            f"{BUILD_ENV} to train with sdpa; nothing is recorded as installed"
        )
    _run("flash-attn's build tools", pip + ["wheel", "ninja", "packaging", "psutil"], venv)
    jobs = _max_jobs()
    print(
        f"runtime: WARNING: building flash-attn {version} from source with MAX_JOBS={jobs}: this takes one to "
        "several hours, with no output for long stretches",
        flush=True,
    )
    command = pip + ["--no-build-isolation", "--no-deps", f"{FLASH_ATTN}=={version}"]
    # FORCE_BUILD: flash-attn's setup.py would otherwise look for the wheel on GitHub again
    _run("building flash-attn", command, venv, MAX_JOBS=str(jobs), FLASH_ATTENTION_FORCE_BUILD="TRUE")
    return f"built from source (MAX_JOBS={jobs})"


def _install_flash_attn(py: str, pip: list[str], version: str, facts: dict, build: bool, venv: Path) -> dict:
    """flash-attn from a matching wheel, or built when asked; else why not. Verified by importing it."""
    current = facts["flash_attn"]
    if current["installed"] and current["version"] == version:
        return {**current, "source": "already installed"}
    if current.get("distribution"):  # left by an earlier install, built for another torch
        _run("removing a flash-attn that does not import", [py, "-m", "pip", "uninstall", "-y", FLASH_ATTN], venv)
    name = wheel_name(version, facts)
    if name is None:
        reason = f"torch {facts.get('torch')} has no CUDA, so no flash-attn wheel fits it"
    else:
        url = wheels_url(version) + name
        found, answer = wheel_available(url)
        if found:
            fix = f"check the network, or set {WHEELS_ENV} to a mirror that has {name}"
            _run("the flash-attn wheel", pip + ["--no-deps", url], venv, fix)
            return _verify_flash_attn(py, url, venv)
        reason = f"no prebuilt wheel {name} at {wheels_url(version)} ({answer})"
    if build:
        return _verify_flash_attn(py, _build_flash_attn(pip, version, venv), venv)
    if current["installed"]:  # another version, put there by hand: it works, so it stays
        return {**current, "source": f"already installed (requirements.txt pins {version}; {reason})"}
    return {"installed": False, "version": None, "source": None, "reason": reason}


def _verify_flash_attn(py: str, source: str, venv: Path) -> dict:
    flash = _facts(py)["flash_attn"]
    if flash["installed"]:
        return {**flash, "source": source}
    # A flash-attn that does not import (an ABI mismatch) is worse than none: remove it, train with sdpa.
    _run("removing flash-attn", [py, "-m", "pip", "uninstall", "-y", FLASH_ATTN], venv)
    return {"installed": False, "version": None, "source": None, "reason": f"{flash['reason']} from {source}; removed"}


def _facts(py: str) -> dict:
    try:
        return probe(py)
    except ProbeError as e:
        raise InstallError(f"installing the GPU runtime failed: {e}; nothing is recorded as installed") from None


def _check_installed(facts: dict, requirements: list[Requirement], pip_args: list[str]) -> None:
    pins = _pins(requirements)
    for name in ("openrlhf", "vllm"):
        if facts.get(name) != pins.get(name):
            raise InstallError(
                f"after installing, the runtime has {name} {facts.get(name)}, not {pins.get(name)} as requirements.txt "
                "pins: fix the conflict pip reported above and run again"
            )
    if not facts.get("torch") or not facts.get("cuda"):
        raise InstallError(
            f"pip installed torch {facts.get('torch')}, a build without CUDA: drop pip arguments that select a CPU "
            f"index ({' '.join(pip_args) or 'none given'}) and run again"
        )


def install(
    venv: str | Path | None = None,
    build_flash_attn: bool = False,
    pip_args: list[str] | tuple[str, ...] = (),
    requirements: str | Path = REQUIREMENTS,
) -> dict:
    """Install the GPU runtime into `venv` (default: `default_venv()`) once per content and return its manifest.
    `build_flash_attn` (or FLASH_ATTN_BUILD=1) builds flash-attn from source when no wheel fits; `pip_args` go to
    every pip install (an index, a proxy). Raises InstallError, one line, when a step fails."""
    venv = Path(venv or default_venv()).absolute()
    build = build_flash_attn or os.environ.get(BUILD_ENV) == "1"
    reqs = _read_requirements(Path(requirements))
    pins = _pins(reqs)
    if not {"openrlhf", FLASH_ATTN} <= pins.keys():
        raise InstallError(f"{requirements} must pin openrlhf and flash-attn (==): restore them")
    flash_version = pins[FLASH_ATTN]
    wheels = wheels_url(flash_version)
    key = install_key(Path(requirements), build, wheels, list(pip_args))
    done = read_manifest(venv)
    if done and done["key"] == key:
        return done
    with _locked(venv):
        done = read_manifest(venv)  # another launcher may have finished it while we waited
        if done and done["key"] == key:
            return done
        _forget(venv)
        if not Path(python(venv)).exists():
            print(f"runtime: installing the GPU runtime into {venv}, once", flush=True)
            create_venv(venv)
        _check_base(venv)
        py = python(venv)
        pip = [py, "-m", "pip", "install", *pip_args]
        _run("upgrading pip", pip + ["--upgrade", "pip"], venv)
        _run("openrlhf (without its flash-attn pin)", pip + ["--no-deps", f"openrlhf=={pins['openrlhf']}"], venv)
        specs = runtime_specs(reqs, _facts(py)["openrlhf_requires"] or [])
        _run("requirements.txt and openrlhf's requirements", pip + specs, venv)
        flash = _install_flash_attn(py, pip, flash_version, _facts(py), build, venv)
        facts = _facts(py)
        _check_installed(facts, reqs, list(pip_args))
        manifest = {
            "key": key,
            "venv": str(venv),
            **{k: facts[k] for k in ("python", "python_version", "torch", "cuda", "cuda_available", "gpus")},
            **{k: facts[k] for k in ("capability", "cxx11abi", "vllm", "openrlhf")},
            "flash_attn": flash,
            "attn_implementation": "flash_attention_2" if flash["installed"] else "sdpa",
            "pip_args": list(pip_args),
            "installed": specs,
        }
        partial = venv / f"{MANIFEST}.partial"
        partial.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(partial, venv / MANIFEST)
        (venv / f".runtime-{key}").touch()  # last: only now does the runtime count as installed
    if flash["installed"]:
        attention = f"flash-attn {flash['version']} ({flash['source']})"
    else:
        attention = f"no flash-attn ({flash['reason']}): recipes asking for flash_attention_2 train with sdpa"
    print(f"runtime: {venv}: torch {facts['torch']} (CUDA {facts['cuda']}), vllm {facts['vllm']}, {attention}")
    return manifest


# ---- by hand ----------------------------------------------------------------------------------------------------


def build_parser() -> cli.Parser:
    parser = cli.parser("python -m launch.runtime", __doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=cli.Parser)
    install_cmd = sub.add_parser("install", help="install the GPU runtime, once per content")
    check_cmd = sub.add_parser("check", help="whether an interpreter can run the job")
    for p in (install_cmd, check_cmd):
        p.add_argument("--venv", type=Path, default=None, help=f"the runtime's venv (default: {DEFAULT_VENV.name})")
    install_cmd.add_argument(
        "--build-flash-attn", action="store_true", help="build flash-attn from source when no wheel fits (hours)"
    )
    install_cmd.add_argument(
        "--pip-args", default="", help='extra arguments for every pip install, e.g. --pip-args="--index-url URL"'
    )
    check_cmd.add_argument("--python", default=None, help="the interpreter to check (default: the runtime's)")
    return parser


@cli.entry_point("python -m launch.runtime", build_parser)
def main(args) -> int:
    venv = args.venv or default_venv()
    if args.command == "install":
        install(venv, args.build_flash_attn, shlex.split(args.pip_args))
        return 0
    checks = interpreter_checks(args.python or python(venv))
    for c in checks:
        print(c.line(), flush=True)
    return 1 if failed(checks) else 0


if __name__ == "__main__":
    sys.exit(main())
