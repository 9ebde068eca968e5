"""The public surface: one sorted ``__all__``, and a core that imports no adapter."""

from __future__ import annotations

import subprocess
import sys

import loadtest_core


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, unique, and every name in it is importable from the package."""
    names = loadtest_core.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(loadtest_core, name), name


def test_private_modules_are_not_exported() -> None:
    """No exported object is a module and no exported name starts with an underscore."""
    for name in loadtest_core.__all__:
        assert not name.startswith("_")
        assert type(getattr(loadtest_core, name)).__name__ != "module"


def test_core_imports_no_adapter_package() -> None:
    """Importing the core loads no gRPC, protobuf, HTTP server or simulation module."""
    code = (
        "import sys, loadtest_core; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('grpc', 'google', 'yandex', 'yandexcloud', 'starlette', 'fastapi', 'uvicorn', "
        "'httpx', 'matplotlib', 'yaml', 'psycopg') or m.startswith(('loadtest_core.grpc', "
        "'loadtest_core.http', 'loadtest_core.server', 'loadtest_core.sim'))]; "
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_command_line_needs_no_extra_for_help_and_diagram() -> None:
    """With grpc, starlette and matplotlib unimportable, --help and diagram still work."""
    code = (
        "import sys\n"
        "for name in ('grpc', 'starlette', 'uvicorn', 'matplotlib', 'yandex', 'prometheus_client'):"
        "\n"
        "    sys.modules[name] = None\n"
        "from loadtest_core.cli import main\n"
        "assert main(['diagram', '--simple']) == 0\n"
        "try:\n"
        "    main(['test', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "stateDiagram-v2" in out.stdout and "ACTION" in out.stdout
