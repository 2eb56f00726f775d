"""The README's bot sections ("Write a bot" to "Test a bot") are code a newcomer copies:
each example must pass `mypy --strict`, and its tests must pass under pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
FILE_NAME = re.compile(r"# (\w+\.py)\n")


def bot_examples() -> dict[str, str]:
    """The ```python blocks of the bot sections that begin with `# name.py`."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Write a bot")
    end = readme.index("\n## ", readme.index("## Test a bot") + 1)
    blocks = re.findall(r"```python\n(.*?)```", readme[start:end], re.DOTALL)
    examples = {}
    for block in blocks:
        name = FILE_NAME.match(block)
        assert name, f"a README bot example does not start with '# file.py':\n{block}"
        examples[name.group(1)] = block
    return examples


def test_the_bot_sections_hold_each_example() -> None:
    assert sorted(bot_examples()) == [
        "blocking.py",
        "errors.py",
        "lifecycle.py",
        "mybot.py",
        "test_mybot.py",
        "test_mybot_life.py",
    ]


def test_the_readmes_bot_examples_pass_mypy_strict_and_their_tests(tmp_path: Path) -> None:
    for name, code in bot_examples().items():
        (tmp_path / name).write_text(code)
    # What the README tells users to configure for async tests.
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    # The package read as an installed one is: its types used, its own findings not shown.
    (tmp_path / "mypy.ini").write_text("[mypy]\n[mypy-adapter.*]\nfollow_imports = silent\n")

    mypy = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "."],
        cwd=tmp_path,
        # An editable install hides the package from mypy, site-packages would not.
        env=os.environ | {"MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
