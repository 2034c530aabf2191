"""Installing the GPU runtime (launch.runtime says what it is and checks it): a venv of its own, openrlhf without
its flash-attn pin, requirements.txt and openrlhf's own requirements, and flash-attn 2.8.3 from a prebuilt wheel
when one matches (built from source only when asked), recorded in `<venv>/runtime.json` once it has all worked.

    from launch.install import install
    manifest = install(runtime.default_venv())       # or: python -m launch.runtime install
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from launch.runtime import (
    BUILD_ENV,
    BUILD_MAX_JOBS,
    DEFAULT_CUDA_HOME,
    DEFAULT_WHEELS,
    FLASH_ATTN,
    MANIFEST,
    REQUIREMENTS,
    STEPS_VERSION,
    VENV_ENV,
    WHEEL_TIMEOUT,
    WHEELS_ENV,
    InstallError,
    ProbeError,
    _clean_env,
    _pins,
    _read_requirements,
    default_venv,
    probe,
    python,
    read_manifest,
)

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


def masked_args(args) -> list[str]:
    """`args` with the password of any URL (an index's `https://user:password@host/...`) replaced by ***."""
    return [re.sub(r"(://[^/@:\s]+:)[^/@\s]+@", r"\1***@", str(a)) for a in args]


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


def _forget(venv: Path) -> None:
    """No stamp and no manifest: from here until success, nothing claims the runtime is installed."""
    for stamp in venv.glob(".runtime-*"):
        stamp.unlink()
    (venv / MANIFEST).unlink(missing_ok=True)


def _run(step: str, command: list[str], venv: Path, fix: str = "", **env: str) -> None:
    print(f"runtime: {step}: {' '.join(masked_args(command[1:]))}", flush=True)
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
            f"index ({' '.join(masked_args(pip_args)) or 'none given'}) and run again"
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
            "pip_args": masked_args(pip_args),
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
