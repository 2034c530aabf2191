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

import json
import os
import shlex
import subprocess
import sys
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


# ---- requirements and the manifest -------------------------------------------------------------------


def _read_requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _pins(requirements: list[Requirement]) -> dict[str, str]:
    return {canonicalize_name(r.name): s.version for r in requirements for s in r.specifier if s.operator == "=="}


def read_manifest(venv: str | Path) -> dict | None:
    """The last successful install's record, None when there is none (or it did not finish)."""
    try:
        manifest = json.loads((Path(venv) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if (Path(venv) / f".runtime-{manifest.get('key')}").exists() else None


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
        from launch.install import install  # it builds on this module

        install(venv, args.build_flash_attn, shlex.split(args.pip_args))
        return 0
    checks = interpreter_checks(args.python or python(venv))
    for c in checks:
        print(c.line(), flush=True)
    return 1 if failed(checks) else 0


if __name__ == "__main__":
    sys.exit(main())
