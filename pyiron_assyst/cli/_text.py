"""Help texts of the commands, made from their module docstrings."""

from __future__ import annotations

__all__ = ["description"]


def description(doc: str | None) -> str:
    """A command's ``--help`` description: its docstring's summary as a sentence, then the
    paragraphs after it (argparse folds the lines)."""
    lines = (doc or "").strip().splitlines()
    if not lines:
        return ""
    head = lines[0].split(": ", 1)[-1].strip()
    head = head[:1].upper() + head[1:]
    if not head.endswith("."):
        head += "."
    rest = " ".join(line.strip() for line in lines[1:] if line.strip())
    return f"{head} {rest}".strip().replace("``", "")
