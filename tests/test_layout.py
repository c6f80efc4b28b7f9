"""The package's shape: one folder per concern, none too big to hold in one's head."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mnist_softmax"
MAX_MODULES = 12


def test_no_package_folder_holds_more_than_twelve_modules():
    folders = [PACKAGE, *(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())]
    sizes = {f.name: len([m for m in f.glob("*.py") if m.name != "__init__.py"]) for f in folders}
    assert len(sizes) >= 8, sizes  # the concern folders exist
    assert max(sizes.values()) <= MAX_MODULES, sizes


def test_command_modules_do_not_import_each_other():
    """Thin mains: a command reaches the library, never another command's module."""
    for module in (PACKAGE / "commands").glob("*.py"):
        text = module.read_text()
        assert "mnist_softmax.commands" not in text, module.name
