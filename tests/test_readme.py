"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_python_examples_run(capsys):
    """Every Python block, in order in one namespace (the own-loop snippet first)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README lost its Python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert "cos(g_T, g_kl)" in capsys.readouterr().out


def test_the_readme_is_a_landing_page():
    """Short, and the first thing under the commands is what they do; the rest is in docs/."""
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    for page in ("docs/quickstart.md", "docs/own-loop.md", "docs/api/index.md"):
        assert (README.parent / page).is_file()


def test_the_readme_starts_with_the_two_setup_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1)
    lines = [line for line in first_block.splitlines() if line.strip()]
    assert "balgrad compare" in lines[0]
    assert "pytest" in lines[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert lines[1].split("#")[0].strip() in ci
