"""``tel chat``: type a prompt, watch its continuation stream; change settings as you go.

Each line is a prompt, continued on its own (a small language model continues text; it
keeps no conversation). A line ``temp X``, ``topk K``, ``topp P``, ``len N`` or ``seed S``
changes a setting; ``quit``, ``exit``, ``q`` or the end of the input (Ctrl-D) leave;
Ctrl-C stops a generation and returns to the prompt. Input may be piped from a file:
each line is then echoed after ``> `` so that the transcript reads as a conversation.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO

import attrs
import torch

from tel_core.errors import TelError
from tel_core.model.sampling import Sampling
from tel_core.use.generate import check_sampling, generate_text
from tel_core.use.load_run import LoadedRun

QUIT = ("quit", "exit", "q")
HELP = (
    "temp X, topk K, topp P, len N and seed S change the settings; quit, exit, q or Ctrl-D "
    "leave; Ctrl-C stops a generation"
)


@attrs.define
class ChatSettings:
    temperature: float
    top_k: int
    top_p: float
    max_new_tokens: int
    seed: int

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_k, self.top_p)

    def describe(self) -> str:
        return (
            f"temperature {self.temperature:g}, top-k {self.top_k}, top-p {self.top_p:g}, "
            f"max new tokens {self.max_new_tokens}, seed {self.seed}"
        )


#: Setting commands: the word, the field it sets, and how its value is read.
SETTINGS: dict[str, tuple[str, Callable[[str], float | int]]] = {
    "temp": ("temperature", float),
    "topk": ("top_k", int),
    "topp": ("top_p", float),
    "len": ("max_new_tokens", int),
    "seed": ("seed", int),
}


def apply_setting(line: str, settings: ChatSettings) -> bool:
    """Change a setting if ``line`` is a setting command; whether it was one.

    A bad value is a ``TelError`` and leaves the settings as they were.
    """
    words = line.split()
    if len(words) != 2 or words[0] not in SETTINGS:
        return False
    field, parse = SETTINGS[words[0]]
    try:
        value = parse(words[1])
    except ValueError:
        raise TelError(f"{words[0]} takes a{'n integer' if parse is int else ' number'}") from None
    changed = attrs.evolve(settings, **{field: value})
    check_sampling(changed.sampling, changed.max_new_tokens)
    setattr(settings, field, value)
    return True


def banner(loaded: LoadedRun, settings: ChatSettings) -> str:
    step = f", step {loaded.step}" if loaded.step is not None else ""
    val = f", val loss {loaded.val_loss:.4f}" if loaded.val_loss is not None else ""
    return (
        f"tel chat: {loaded.run_dir} (checkpoint {loaded.checkpoint}{step}{val})\n"
        f"settings: {settings.describe()}\n{HELP}"
    )


def chat(
    loaded: LoadedRun,
    settings: ChatSettings,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    """Run the loop until quit or the end of ``stdin``."""
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    interactive = stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):  # line editing and history for input()
            import readline  # noqa: F401
    print(banner(loaded, settings), file=out, flush=True)
    generator = torch.Generator(device=loaded.device).manual_seed(settings.seed)

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    # Piped input is echoed after "> ", so that the transcript shows what was asked; an
    # answer other than a continuation then starts on the next line.
    lead = "" if interactive else "\n"

    def respond(line: str) -> bool:
        """Answer one line; False to leave."""
        command = line.strip()
        if command in QUIT or not command:
            write(lead)
            return not command
        try:
            seed = settings.seed
            if apply_setting(command, settings):
                if settings.seed != seed:
                    generator.manual_seed(settings.seed)
                write(f"{lead}settings: {settings.describe()}\n")
                return True
            # The continuation follows the prompt on its line.
            sampling, length = settings.sampling, settings.max_new_tokens
            generate_text(loaded, line, length, sampling, generator, write=write)
            write("\n")
        except KeyboardInterrupt:
            write(" [stopped]\n")
        except TelError as exc:  # a prompt the tokenizer refuses, a bad value: say so, go on
            write(lead)
            print(f"tel: error: {exc}", file=err, flush=True)
        return True

    with _ctrl_c_interrupts():
        _loop(stdin, out, interactive, respond, write)


def _loop(
    stdin: TextIO,
    out: TextIO,
    interactive: bool,
    respond: Callable[[str], bool],
    write: Callable[[str], None],
) -> None:
    while True:
        try:
            line = _read(stdin, out, interactive)
        except KeyboardInterrupt:  # at the prompt: a fresh line, not goodbye
            print("\n(quit, exit, q or Ctrl-D leave)", file=out, flush=True)
            continue
        if line is None:
            break
        if not interactive:
            write(f"> {line}")
        if not respond(line):
            break


@contextlib.contextmanager
def _ctrl_c_interrupts() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, even in a process started with SIGINT ignored (as
    a shell starts background jobs), so that it stops a generation rather than nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _read(stdin: TextIO, out: TextIO, interactive: bool) -> str | None:
    """The next line, without its newline; None at the end of the input."""
    if interactive and stdin is sys.stdin:
        try:
            return input("> ")
        except EOFError:
            print(file=out)
            return None
    line = stdin.readline()
    return line.rstrip("\r\n") if line else None
