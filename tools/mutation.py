"""Mutation testing, one module against its own tests: `python tools/mutation.py NAME`.

mutmut changes the module one small edit at a time (`>` to `>=`, a constant, a deleted
call) and runs the module's own tests against each change; a change no test notices
("survived") is a behaviour the tests do not pin. This script keeps the habit cheap and
repeatable: it copies the project into a scratch directory (mutmut writes a `mutants/`
tree and a cache next to the code), gives mutmut that one module and its test files,
runs one worker under a time limit, and prints the score and every survivor's diff.

mutmut runs only the tests it saw call the mutated function, and it cannot mutate objects
the tests build while pytest collects them (a `Keyword("HELP")` in a parametrize table).
So each survivor is then re-run the plain way: the mutant is written into the source and
the module's test files run in full; one those tests fail on is counted as killed.

Not part of the test suite: a run takes minutes. Needs mutmut in the venv
(`pip install 'mutmut>=3.8,<3.9'`, see README "Mutation testing").
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    sources: tuple[str, ...]
    tests: tuple[str, ...]


# Each module with the test files that are meant to pin its behaviour.
TARGETS: dict[str, Target] = {
    "webhook_form": Target(
        ("adapter/twilio/webhook_form.py",),
        ("tests/twilio/test_webhook_form.py", "tests/web/test_webhooks.py"),
    ),
    "signature": Target(("adapter/twilio/signature.py",), ("tests/twilio/test_signature.py",)),
    "ratelimit": Target(("adapter/ratelimit.py",), ("tests/test_ratelimit.py",)),
    "retry": Target(
        ("adapter/delivery/retry.py",),
        ("tests/delivery/test_retry.py", "tests/delivery/test_retry_end_to_end.py"),
    ),
    "segments": Target(
        ("adapter/segments.py", "adapter/long_messages.py"), ("tests/test_segments.py",)
    ),
    "filters": Target(("adapter/bot/filters.py",), ("tests/bot/test_filters.py",)),
    # The contract suite run against the memory backend: what the contract pins of a store.
    "store_contract": Target(
        ("adapter/store/memory.py",),
        ("tests/store/test_contract.py", "tests/store/test_contract_history.py"),
    ),
}


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def _prepare(scratch: Path, target: Target) -> None:
    for folder in ("adapter", "bots", "tests"):
        shutil.copytree(
            ROOT / folder, scratch / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "README.md", scratch / "README.md")
    pytest_args = ["-p", "no:cacheprovider", "-q", "-x"]
    config = (
        "\n[tool.mutmut]\n"
        'source_paths = ["adapter"]\n'
        f"only_mutate = {_toml_list(list(target.sources))}\n"
        f"pytest_add_cli_args = {_toml_list(pytest_args)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(list(target.tests))}\n"
        "use_git_change_detection = false\n"
    )
    pyproject = (ROOT / "pyproject.toml").read_text() + config
    (scratch / "pyproject.toml").write_text(pyproject)


def _pytest(scratch: Path, tests: tuple[str, ...], timeout: float) -> bool:
    """Whether the test files pass on the code as it now is in `scratch`."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=os.environ | {"PYTHONPATH": str(scratch)},
        )
    except subprocess.TimeoutExpired:
        return False  # a mutant that makes the tests hang is caught too
    return result.returncode == 0


def _survives_plain_run(scratch: Path, target: Target, name: str) -> bool:
    """Write the mutant into the source, run the module's tests, put the source back."""
    originals = {source: (scratch / source).read_text() for source in target.sources}
    try:
        _mutmut(scratch, "apply", name, timeout=120)
        return _pytest(scratch, target.tests, timeout=600)
    finally:
        for source, text in originals.items():
            (scratch / source).write_text(text)


def _mutmut(scratch: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=os.environ | {"PYTHONPATH": str(scratch)},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the run")
    parser.add_argument("--workers", type=int, default=1, help="mutmut --max-children")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    options = parser.parse_args()
    target = TARGETS[options.target]

    scratch = Path(tempfile.mkdtemp(prefix=f"mutation-{options.target}-"))
    try:
        _prepare(scratch, target)
        try:
            run = _mutmut(
                scratch, "run", "--max-children", str(options.workers), timeout=options.timeout
            )
        except subprocess.TimeoutExpired:
            print(f"mutmut did not finish within {options.timeout:g}s", file=sys.stderr)
            return 2
        if run.returncode != 0:
            print(run.stdout[-4000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
            return run.returncode
        results = _mutmut(scratch, "results", "--all", "true", timeout=120).stdout
        verdicts = re.findall(r"^\s*(\S+): (\w[\w ]*)$", results, flags=re.MULTILINE)
        suspects = [name for name, verdict in verdicts if verdict == "survived"]
        # A timeout is a kill too: the tests noticed the mutant hang.
        caught = ("killed", "timeout")
        killed = sum(1 for _, verdict in verdicts if verdict in caught)
        others = [(n, v) for n, v in verdicts if v not in (*caught, "survived")]
        survivors = [name for name in suspects if _survives_plain_run(scratch, target, name)]
        for name in survivors:
            print(_mutmut(scratch, "show", name, timeout=120).stdout)
        for name, verdict in others:
            print(f"{name}: {verdict}")
        total = len(verdicts)
        killed += len(suspects) - len(survivors)
        score = 100 * killed / total if total else 0.0
        print(
            f"{options.target}: {killed} of {total} mutants killed ({score:.0f}%, "
            f"{len(suspects) - len(survivors)} of them by the plain re-run), "
            f"{len(survivors)} survived, {len(others)} other"
        )
        return 0
    finally:
        if options.keep:
            print(f"scratch directory kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
