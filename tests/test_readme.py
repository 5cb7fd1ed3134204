"""Every command in README.md's fenced blocks, run as written.

The commands are read from the README at collection time and each becomes one test. A
command runs in a fresh folder laid out like the repository (``src``, ``conf``, ``scripts``,
``Makefile``, ``.venv`` linked in; ``photos/`` and ``scenes/`` hold a few images) with the
project's environment active, exactly as written; the only additions are a step or batch
limit (:data:`LIMITS`). Each command runs in its own folder, once per session (test
processes share them). Commands that need what a test machine does not have are recognised
by what they name and listed as skipped with the reason (:func:`skip_reason`): real CLIP
weights (``teacher=rn50``, ...), real datasets (``data=voc``, ``data.root=/...``), a SLURM
cluster, the package index, or a value only the user knows (``<partition>``). Placeholders for
the outputs of earlier README commands (``logs/eval/multiruns/<date>``,
``logs/train/runs/<run>/...``) are filled with those outputs: the commands that write them run
first, and their output folders are copied in. Servers (``make app``) run until their page
answers and are then stopped with Ctrl-C. Long commands (``make demo``) run in the slow suite.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: experiments on any folder of images (data.root=photos runs on the layout's photos/)
FOLDER_EXPERIMENTS = {"distill_folder"}
#: CLIPs shipped in the repository: every other teacher needs downloaded weights
#: teachers whose weights ship with the project (or that need none): every conf/teacher whose
#: ``pretrained`` is the shipped tag ``shapes`` or null (a list by hand once missed one)
SHIPPED_TEACHERS = {
    p.stem
    for p in (ROOT / "conf" / "teacher").glob("*.yaml")
    if re.search(r"^pretrained: (shapes|null)\b", p.read_text(), re.MULTILINE)
}
#: datasets that are files on disk (the shapes worlds are drawn by code)
FILE_DATASETS = {"voc", "context59", "context60", "cocostuff171", "folder"}
#: commands that serve until stopped, by their start: run until they answer at their address,
#: then stopped as a user does (Ctrl-C)
SERVERS = ("make app", "python -m src.app")
#: the step or batch limit added to a command, by its start (nothing else is ever added)
LIMITS = {
    "python -m src.train": "trainer.max_steps=2 trainer.limit_val_batches=1",
    "python -m src.eval": "trainer.limit_test_batches=1",
}
#: commands that run for minutes even when limited: the slow suite only
SLOW = {"make demo"}
#: placeholders filled with what earlier README commands wrote
OUTPUT_PLACEHOLDER = re.compile(r"logs/(\w+)/(runs|multiruns)/<(\w+)>")


@dataclass(frozen=True)
class Command:
    """One README command: its text as written and the section it is in."""

    text: str
    section: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text, comments=True)

    @property
    def line(self) -> str:
        """The command without its trailing comment."""
        return shlex.join(self.words)


def readme_commands() -> list[Command]:
    """The commands of every fenced ``bash`` block, continuation lines joined."""
    out: list[Command] = []
    section, block, buffer = "", False, ""
    for raw in README.read_text().splitlines():
        if raw.startswith("#") and not block:
            section = raw.lstrip("#").strip()
        if raw.startswith("```"):
            block = raw.strip() in ("```bash", "```sh", "```shell") if not block else False
            continue
        if not block:
            continue
        buffer += raw.rstrip()
        if buffer.endswith("\\"):
            buffer = buffer[:-1] + " "
            continue
        if buffer.strip():
            out.append(Command(_without_comment(buffer).strip(), section))
        buffer = ""
    return out


def _without_comment(text: str) -> str:
    """``text`` up to a ``#`` that starts a shell comment (not one inside quotes)."""
    quote = ""
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i]
    return text


def _values(words: list[str], key: str) -> list[str]:
    """Values given to ``key=`` (a sweep ``a,b`` gives each) or ``--key value``."""
    found = []
    for i, word in enumerate(words):
        if word.startswith(f"{key}="):
            found += word.split("=", 1)[1].split(",")
        if word == f"--{key}" and i + 1 < len(words):
            found.append(words[i + 1])
    return found


def produces(command: Command) -> set[tuple[str, str]]:
    """The output folders a command writes: ``(task, runs|multiruns)``."""
    words = command.words
    if words[:2] != ["python", "-m"] or not words[2].startswith("src."):
        return set()
    return {(words[2][4:], "multiruns" if "-m" in words[3:] else "runs")}


def skip_reason(command: Command, earlier: Sequence[Command]) -> str | None:
    """Why a test machine cannot run ``command`` as written (None: it can)."""
    return _skip_reason(command, tuple(earlier))


@functools.cache  # the earlier commands' own reasons are asked again for every later one
def _skip_reason(command: Command, earlier: tuple[Command, ...]) -> str | None:
    words, line = command.words, command.line
    if not words:
        return "no command"
    if words[:2] == ["make", "install"] or words[:2] == ["pip", "install"] or "jupyter" in line:
        return "installs packages (needs the package index)"
    if words[:2] in (["make", "test"], ["make", "test-full"]):
        return "the test suite itself"
    if words[:2] == ["make", "bench"]:
        return "measures speed and rewrites docs/benchmarks.json (make bench is its own check)"
    if words[:2] == ["make", "format"]:
        return "rewrites the source files"
    if any("hydra/launcher=slurm" in w for w in words):
        return "needs a SLURM cluster (and the weights and data it sweeps)"
    teachers = _values(words, "teacher")
    real = sorted({t for t in teachers if t not in SHIPPED_TEACHERS})
    if real:
        return f"needs the CLIP weights of {', '.join(real)} (downloaded by open_clip)"
    data = [d for d in _values(words, "data") if d in FILE_DATASETS]
    experiments = [e for e in _values(words, "experiment")
                   if not e.startswith("shapes") and e not in FOLDER_EXPERIMENTS]  # fmt: skip
    if data or experiments or any(w.startswith("data.root=/") for w in words):
        return f"needs a real dataset ({', '.join(data + experiments) or 'data.root'})"
    module = words[2] if words[:2] == ["python", "-m"] else ""
    if module in ("src.train", "src.eval") and not experiments and not teachers:
        if not any(w.startswith("experiment=") for w in words):
            return "needs the CLIP weights of rn50 (the default teacher)"
    made = set().union(*(produces(c) for i, c in enumerate(earlier)
                         if not skip_reason(c, earlier[:i])))  # fmt: skip
    for task, kind, _ in OUTPUT_PLACEHOLDER.findall(line):
        if (task, kind) not in made:
            return f"logs/{task}/{kind}/<...> comes from a README command a test cannot run"
    unknown = [p for p in re.findall(r"<[^>]+>", OUTPUT_PLACEHOLDER.sub("", line))]
    if unknown:
        return f"{', '.join(unknown)} stands for the user's own value"
    return None


COMMANDS = readme_commands()
CASES = [
    pytest.param(
        i,
        id=f"{c.section[:24]}: {c.line[:70]}",
        marks=[pytest.mark.slow] if c.line in SLOW else [],
    )
    for i, c in enumerate(COMMANDS)
]


def test_the_readme_has_commands_of_every_kind() -> None:
    """The parser sees the README's commands, and the classification is not all skips."""
    lines = [c.line for c in COMMANDS]
    assert "make demo" in lines and "make install" in lines
    runnable = [c for i, c in enumerate(COMMANDS) if not skip_reason(c, COMMANDS[:i])]
    modules = {c.words[2] for c in runnable if c.words[:2] == ["python", "-m"]}
    assert {"src.train", "src.eval", "src.predict"} <= modules
    assert any("-m" in c.words[3:] for c in runnable)  # a sweep, as written
    # scenes/ is made by a README command before any command reads it (issue 23, item 8)
    makes = lines.index("python scripts/make_scenes.py scenes/")
    assert makes < min(i for i, line in enumerate(lines) if "scenes/" in line and i != makes)
    assert "needs the CLIP weights of rn50" in str(skip_reason(COMMANDS[lines.index(
        next(x for x in lines if "teacher=rn50" in x))], []))  # fmt: skip


# ---------------------------------------------------------------------- running them
def layout(folder: Path) -> Path:
    """``folder`` laid out like the repository, with ``photos/`` and ``scenes/``."""
    from src.data.shapes import ShapesConfig, render_scene

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("src", "conf", "scripts", "Makefile", "pyproject.toml", ".venv"):
        if (ROOT / name).exists():
            (folder / name).symlink_to(ROOT / name)
    (folder / "photos").mkdir()
    (folder / "scenes").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / "photos" / f"photo{i}.jpg")
    for i in range(3):
        scene = render_scene(ShapesConfig(), i, "val").image
        Image.fromarray(scene).save(folder / "scenes" / f"scene{i}.png")
    return folder


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the commands run: one folder per command, shared by the test processes of one
    session (a command another process ran, or is running, is not run twice)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, above each worker's own
    (base / "readme").mkdir(exist_ok=True)
    return base / "readme"


def environment() -> dict[str, str]:
    """The project's environment, active as after ``source .venv/bin/activate``."""
    bindir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": sys.prefix,
        "HF_HUB_OFFLINE": "1",  # tests never touch the network
        "HYDRA_FULL_ERROR": "1",  # a failure shows its trace in the test report
        "OMP_NUM_THREADS": "1",
    }


def run(index: int, shared: Path) -> dict:
    """Run README command ``index`` once per session, in its own folder; first the earlier
    commands whose outputs it names, whose output folders are copied into its folder.

    Returns ``{"shell", "returncode", "stderr", "written"}`` (``written``: the
    ``metrics.json`` files the command wrote).
    """
    command = COMMANDS[index]
    with open(shared / f"cmd{index}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be running it
        done = shared / f"cmd{index}.json"
        if done.is_file():
            return json.loads(done.read_text())
        root = layout(shared / f"cmd{index}")

        def earlier_output(match: re.Match[str]) -> str:
            task, kind, _ = match.groups()
            producer = max(  # the closest earlier command that writes such a folder
                i
                for i in range(index)
                if (task, kind) in produces(COMMANDS[i])
                and not skip_reason(COMMANDS[i], COMMANDS[:i])
            )
            run(producer, shared)
            (made,) = (shared / f"cmd{producer}" / "logs" / task / kind).iterdir()
            copy = root / "logs" / task / kind / made.name
            shutil.copytree(made, copy, symlinks=True)
            return str(copy.relative_to(root))

        text = re.sub(r"\s+\[--[^\]]*\]", "", command.text)  # an optional flag: [--out DIR]
        text = OUTPUT_PLACEHOLDER.sub(earlier_output, text)
        limit = next((v for k, v in LIMITS.items() if command.line.startswith(k)), "")
        shell = f"{text} {limit}".strip()
        before = set(root.glob("logs/**/metrics.json"))
        if command.line.startswith(SERVERS):
            returncode, stdout, stderr = serve(shell, root)
        else:
            proc = subprocess.run(
                ["bash", "-c", shell], cwd=root, env=environment(), capture_output=True,
                text=True, timeout=1800,
            )  # fmt: skip
            returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        written = sorted(str(p) for p in set(root.glob("logs/**/metrics.json")) - before)
        result = {"shell": shell, "returncode": returncode, "written": written,
                  "stderr": stderr[-6000:], "stdout": stdout[-2000:]}  # fmt: skip
        done.write_text(json.dumps(result))
        return result


def serve(shell: str, root: Path, *, wait: float = 180.0) -> tuple[int, str, str]:
    """Start the server command ``shell``, wait until its page answers (``port=`` of the
    command, else 7860), then stop it with Ctrl-C (SIGINT to its process group).

    Returns ``(returncode, stdout, stderr)``; the return code is 0 only when the page answered
    and the server then stopped cleanly, else it says what went wrong.
    """
    port = int(next(iter(_values(shlex.split(shell), "port")), 7860))
    url = f"http://127.0.0.1:{port}/"
    out, err = root / "server.out", root / "server.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(["bash", "-c", shell], cwd=root, env=environment(),
                                stdout=stdout, stderr=stderr, start_new_session=True)  # fmt: skip
        answered, waited = False, 0.0
        while waited < wait and proc.poll() is None and not answered:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    answered = response.status == 200 and b"<html" in response.read()[:2000].lower()
            except OSError:
                pass  # not serving yet
            if not answered:
                time.sleep(0.5)
                waited += 0.5
        exited_early = proc.poll() is not None
        if not exited_early:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    code = 0 if answered and not exited_early else (proc.returncode or 1)
    note = "" if answered else f"\n{url} never answered (waited {waited:.0f} s)"
    return code, out.read_text(), err.read_text() + note


@pytest.mark.parametrize("index", CASES)
def test_readme_command_runs_as_written(index: int, shared: Path) -> None:
    command = COMMANDS[index]
    reason = skip_reason(command, COMMANDS[:index])
    if reason:
        pytest.skip(reason)
    result = run(index, shared)
    report = f"{result['shell']}\n{result['stdout']}\n{result['stderr']}"
    assert result["returncode"] == 0, report
    assert "Traceback" not in result["stderr"], report
    words = command.words
    if words[:3] in (["python", "-m", "src.train"], ["python", "-m", "src.eval"]):
        sweep = "-m" in words[3:]
        points = 1
        for word in words[3:]:
            if "=" in word and "," in word.split("=", 1)[1]:
                points *= len(word.split("=", 1)[1].split(","))
        written = result["written"]
        assert len(written) == (points if sweep else 1), written
        kind = "multiruns" if sweep else "runs"
        assert all(f"/logs/{words[2][4:]}/{kind}/" in p for p in written), written
