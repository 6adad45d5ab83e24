"""The package reads from its ``__init__``: its docstring lists every module, once."""

from __future__ import annotations

import re
from pathlib import Path

from userportrait.store import state


def test_the_package_docstring_lists_every_module() -> None:
    modules = {p.stem for p in Path(state.__file__).parent.glob("*.py")} - {"__init__"}
    listed = re.findall(r"^\* ``(\w+)``", state.__doc__ or "", re.MULTILINE)
    assert sorted(listed) == sorted(modules)
