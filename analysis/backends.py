"""The models `analysis.evaluate` generates with: vLLM on a GPU node, transformers anywhere (the tests use it on
a tiny random model). Both decode alike (`Settings`) and give `Completion`s: the text, its tokens, truncation.
`in_own_process` runs the work on one model in a process of its own, the only way to have vLLM give the
model's GPU memory back; what fails there, a crash included, is one line naming the model.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass

from reward_funcs.cli import UsageError


@dataclass(frozen=True)
class Settings:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    seed: int = 0
    batch_size: int = 16


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int
    truncated: bool


def vllm_sampling_kwargs(settings: Settings) -> dict:
    """What vLLM's SamplingParams receives: the same decoding as the transformers backend."""
    return {
        "n": settings.n,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_new_tokens,
        "seed": settings.seed,
        "skip_special_tokens": False,
    }


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, settings: Settings):
        from vllm import LLM  # only on a GPU node

        self.settings = settings
        self.llm = LLM(model=model, seed=settings.seed, max_model_len=None)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: list[str]) -> list[list[Completion]]:
        from vllm import SamplingParams

        outputs = self.llm.generate(prompts, SamplingParams(**vllm_sampling_kwargs(self.settings)))
        return [
            [Completion(o.text, len(o.token_ids), o.finish_reason == "length") for o in out.outputs] for out in outputs
        ]


class TransformersBackend:
    name = "transformers"

    def __init__(self, model: str, settings: Settings):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device).eval()
        self.device = device

    def generate(self, prompts: list[str]) -> list[list[Completion]]:
        import torch

        s = self.settings
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = s.temperature > 0
        torch.manual_seed(s.seed)
        with torch.no_grad():
            out = self.model.generate(
                **batch,
                max_new_tokens=s.max_new_tokens,
                do_sample=sampling,
                num_return_sequences=s.n,
                temperature=s.temperature if sampling else None,
                top_p=s.top_p if sampling else None,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :].tolist()
        results = []
        for i in range(len(prompts)):
            group = []
            for ids in new[i * s.n : (i + 1) * s.n]:
                if self.tokenizer.eos_token_id in ids:  # keep the end-of-text token, as OpenRLHF's query does
                    ids = ids[: ids.index(self.tokenizer.eos_token_id) + 1]
                    truncated = False
                else:
                    ids = [t for t in ids if t != self.tokenizer.pad_token_id] if sampling else ids
                    truncated = len(ids) >= s.max_new_tokens
                group.append(Completion(self.tokenizer.decode(ids, skip_special_tokens=False), len(ids), truncated))
            results.append(group)
        return results


def first_line(error: BaseException) -> str:
    """An error's first line, or its type when it has no message (vLLM's and torch's messages run to many)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def make_backend(name: str, model: str, settings: Settings):
    """Load `model` with backend `name` (auto: vLLM when installed and a GPU is present; `vllm` itself needs no
    check of the GPU, so a stand-in can take its place). A model that cannot be loaded (no such folder or hub
    name, the hub unreachable, no weights, not enough free GPU memory) is a UsageError naming it; a vLLM that
    cannot be imported is one naming vLLM."""
    if name == "auto":
        import importlib.util

        import torch

        name = "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "transformers"
    if name == "vllm":
        check_vllm()
    unreachable = hub_unreachable(model)
    try:
        return (VLLMBackend if name == "vllm" else TransformersBackend)(model, settings)
    except (ImportError, OSError, ValueError, RuntimeError) as e:
        # ImportError: a package the model's code needs; OSError: transformers and vLLM cannot find or read it;
        # ValueError: vLLM's check of free GPU memory and of the model's config; RuntimeError: vLLM's engine
        # failing to start, torch out of memory
        hub = f" (the hub did not answer: {unreachable}; only the local cache was searched)" if unreachable else ""
        raise UsageError(f"cannot load the model {model}: {first_line(e)}{hub}") from None


def check_vllm() -> None:
    """vLLM can be imported, or a UsageError saying so (not one blaming the model about to be loaded)."""
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        if e.name == "vllm":
            raise UsageError(
                "--backend vllm needs vLLM (pip install vllm==0.29.0 on a GPU node), or pass --backend transformers"
            ) from None
        raise UsageError(
            f"--backend vllm: vLLM cannot be imported ({first_line(e)}): repair its install (pip install "
            "vllm==0.29.0 on a GPU node), or pass --backend transformers"
        ) from None


HUB_WAIT_SECONDS = 5  # how long the hub has to answer before the model is looked for in the local cache only


def hub_unreachable(model: str) -> str | None:
    """For a hub name, when the Hugging Face hub does not answer one request within HUB_WAIT_SECONDS (or answers
    with a server error): why, and offline mode for this process and those it starts, so that the model loads
    from the local cache or fails at once, instead of after huggingface_hub's retries of every file (a minute).
    None for a local folder, in offline mode already, or when the hub answers."""
    if os.path.exists(model):
        return None
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session
    except ImportError:  # no hub client: the backend says what is missing
        return None
    if constants.is_offline_mode():
        return None
    answer = []

    def ask() -> None:
        try:
            status = get_session().head(constants.ENDPOINT, timeout=HUB_WAIT_SECONDS).status_code
            answer.append(f"HTTP {status} from {constants.ENDPOINT}" if status >= 500 else None)
        except Exception as e:  # whatever stops an answer: no route, no name, a proxy's refusal
            answer.append(f"{constants.ENDPOINT}: {first_line(e)}")

    asking = threading.Thread(target=ask, daemon=True)  # a name lookup can hang past any timeout: never wait on it
    asking.start()
    asking.join(HUB_WAIT_SECONDS + 1)
    why = answer[0] if answer else f"no answer from {constants.ENDPOINT} in {HUB_WAIT_SECONDS} s"
    if why:
        constants.HF_HUB_OFFLINE = True  # what huggingface_hub and transformers consult before every request
        os.environ["HF_HUB_OFFLINE"] = "1"  # and vLLM's engine processes, which import them afresh
    return why


# ---- one process per model -----------------------------------------------------------------------------------


def in_this_process(work, model: str, *args):
    """work(model, *args); what the libraries under it raise (vLLM's and torch's errors: CUDA out of memory, an
    engine that died...) becomes a UsageError naming the model, one line rather than a traceback."""
    try:
        return work(model, *args)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"evaluating the model {model} failed: {type(e).__name__}: {first_line(e)}") from None


def _in_child(answer, work, model: str, *args) -> None:
    """in_own_process's child: in_this_process, its result or its error sent to the parent."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())  # tqdm's default lock is a semaphore, which a killed child would leak
    try:
        answer.send(("done", in_this_process(work, model, *args)))
    except UsageError as e:
        answer.send(("error", str(e)))
    except KeyboardInterrupt:  # Ctrl-C reached the parent too, which says so
        pass


def in_own_process(work, model: str, *args):
    """work(model, *args) in a process started for it that exits when it is done: vLLM keeps a model's GPU memory
    until its process exits, so a second model loaded in the same process fails vLLM's check of free memory.
    Spawned, not forked, so that it inherits no CUDA state; `work` and its arguments must pickle. Its failure, a
    crash included, is a UsageError naming the model."""
    context = multiprocessing.get_context("spawn")
    receive, answer = context.Pipe(duplex=False)
    child = context.Process(target=_in_child, args=(answer, work, model, *args))
    child.start()
    answer.close()  # the child holds the only sending end now: if it dies, recv() ends with EOFError
    try:
        try:
            status, value = receive.recv()
        except EOFError:
            status, value = "died", None
        child.join()
    finally:
        if child.is_alive():  # interrupted: leave no model running
            child.terminate()
            child.join()
        receive.close()
    if status == "done":  # a crash while exiting, after the work was done, loses nothing
        return value
    if status == "error":
        raise UsageError(value)
    code = child.exitcode
    how = f"was killed by {signal_name(-code)}" if code and code < 0 else f"exited with status {code}"
    hint = " (out of memory?)" if code == -signal.SIGKILL else ""
    raise UsageError(f"evaluating the model {model} failed: its process {how} before it finished{hint}")


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
