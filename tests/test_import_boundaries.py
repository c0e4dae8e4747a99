"""The emulator is an independent oracle of Microsoft 365: it must not share code with the
exporter, or one wrong formula would pass both sides. Both directions are checked on the
source, so a lazy import inside a function is caught too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).parent.parent / "src"
EXPORTER = SRC / "m365_smtp_exporter"
EMULATOR = SRC / "m365_emulator"
# The one place where the exporter starts the emulator: `m365-smtp-exporter demo/emulator`.
EXPORTER_MAY_IMPORT_EMULATOR = {EXPORTER / "demo.py"}


def imported_modules(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports stay inside their own package
                continue
            if node.module:
                yield node.module


def offending(package: Path, forbidden: str, allowed: set[Path]) -> list[str]:
    return [
        f"{path.relative_to(package.parent)} imports {name}"
        for path in sorted(package.rglob("*.py"))
        if path not in allowed
        for name in imported_modules(path)
        if name == forbidden or name.startswith(forbidden + ".")
    ]


def test_the_emulator_never_imports_the_exporter() -> None:
    assert offending(EMULATOR, "m365_smtp_exporter", set()) == []


def test_the_exporter_imports_the_emulator_only_from_the_demo_entry_point() -> None:
    assert offending(EXPORTER, "m365_emulator", EXPORTER_MAY_IMPORT_EMULATOR) == []


def test_the_checks_would_see_a_violation(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "bad.py").write_text("def f():\n    from m365_smtp_exporter.quota import limits\n")
    assert offending(package, "m365_smtp_exporter", set()) == [
        "pkg/bad.py imports m365_smtp_exporter.quota"
    ]
