"""
The package map: the top level holds only the twelve faces; rooms never import a face; the room
imports equal the list in the package docstring, and point only up that list (no cycles).
"""

import ast
import re
from pathlib import Path

import pytest

import guided_diffusion

PACKAGE = Path(guided_diffusion.__file__).parent
FACES = {
    "dist_util", "fp16_util", "gaussian_diffusion", "image_datasets", "logger", "losses", "nn",
    "resample", "respace", "script_util", "train_util", "unet",
}
ROOMS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def imported_package_names(path, room):
    """
    The top-level names under guided_diffusion that a module of `room` imports (anywhere in the
    file, functions included): a room name or a face name.
    """
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".") if node.module else []
            if node.level == 1:
                yield room
            elif node.level == 2:
                yield from ([parts[0]] if parts else [a.name for a in node.names])
            elif node.level == 0 and parts[0] == "guided_diffusion":
                yield from ([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "guided_diffusion" and len(parts) > 1:
                    yield parts[1]


def room_imports(room):
    """:return: {imported name: sorted module paths of `room` that import it}, itself excluded."""
    out = {}
    for path in sorted((PACKAGE / room).rglob("*.py")):
        for name in set(imported_package_names(path, room)) - {room}:
            out.setdefault(name, []).append(str(path.relative_to(PACKAGE)))
    return out


def documented_room_imports():
    """The `room -> a, b` lines of the package docstring, in order: [(room, {a, b})]."""
    lines = re.findall(r"^    (\w+)\s+-> (.+)$", guided_diffusion.__doc__, re.M)
    return [(room, {r.strip() for r in targets.split(",")}) for room, targets in lines]


def test_the_top_level_holds_only_the_faces():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == FACES


def test_the_parser_sees_relative_and_absolute_imports(tmp_path):
    (tmp_path / "m.py").write_text(
        "from . import a\nfrom ..models import b\nfrom .. import logger\nimport guided_diffusion.unet\n"
        "from guided_diffusion.data.pixels import c\n\ndef f():\n    from guided_diffusion import nn\n"
    )
    assert sorted(imported_package_names(tmp_path / "m.py", "sampling")) == [
        "data", "logger", "models", "nn", "sampling", "unet",
    ]


@pytest.mark.parametrize("room", ROOMS)
def test_no_room_imports_a_face(room):
    faces = {name: paths for name, paths in room_imports(room).items() if name in FACES}
    assert not faces, f"{room}/ imports the face(s) {faces}; import the room module instead"


def test_room_imports_match_the_package_docstring():
    documented = dict(documented_room_imports())
    actual = {room: set(room_imports(room)) - FACES for room in ROOMS}
    actual = {room: names for room, names in actual.items() if names}
    assert actual == documented, "update the 'Room imports' list in guided_diffusion/__init__.py"


def test_rooms_import_only_rooms_listed_above_them():
    # every room appears in the docstring's map of rooms, in the order the import list uses
    order = re.findall(r"^    (\w+)/ ", guided_diffusion.__doc__, re.M)
    assert sorted(order) == ROOMS
    for room, targets in documented_room_imports():
        above = set(order[: order.index(room)])
        assert targets <= above, f"{room} imports {sorted(targets - above)}, listed below it"
