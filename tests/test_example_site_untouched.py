"""The tests leave the example site alone (issue 13 point 5): its instance folder (reports, agent
directory) is a temporary one during the tests, for in-process apps and for servers started as processes;
so is the instance folder of the tests' own apps (not tests/instance)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from example_site import app as example

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_INSTANCE = ROOT / "example_site" / "instance"


def test_example_site_apps_use_a_temporary_instance_folder() -> None:
    for app in (example.app, example.create_app()):
        instance = Path(app.instance_path).resolve()
        assert not instance.is_relative_to(ROOT), instance
        reports = app.extensions["lpcall"].reports
        assert not Path(reports.store.path).resolve().is_relative_to(ROOT / "example_site"), reports.store.path


def test_a_tests_own_app_gets_a_temporary_instance_folder_too() -> None:
    from flask import Flask

    from flask_lpcall import LPCall

    app = Flask(__name__)  # no instance_path: Flask would pick tests/instance
    app.config.update(SECRET_KEY="x")
    LPCall(app)
    instance = Path(app.instance_path)
    assert instance.is_relative_to(os.environ["EXAMPLE_SITE_INSTANCE"]) and not instance.is_relative_to(ROOT)
    reports = app.extensions["lpcall"].reports.store.path
    assert not Path(reports).is_relative_to(ROOT), reports


def test_example_site_in_a_server_process_uses_it_too() -> None:
    """gunicorn and `flask run` servers of the tests inherit the environment: same folder."""
    code = "import json; from example_site.app import create_app; print(json.dumps(create_app().instance_path))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    instance = Path(json.loads(out.stdout.strip().splitlines()[-1]))
    assert instance == Path(os.environ["EXAMPLE_SITE_INSTANCE"]) and not instance.is_relative_to(ROOT)


def test_without_the_override_the_example_site_keeps_its_own_folder() -> None:
    """What ./dev.sh run gets: example_site/instance, as documented."""
    code = "import json; from example_site.app import create_app; print(json.dumps(create_app().instance_path))"
    env = {k: v for k, v in os.environ.items() if k != "EXAMPLE_SITE_INSTANCE"}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT), "FLASK_LPCALL_REPORT_DB": '":memory:"'})
    assert Path(json.loads(out.stdout.strip().splitlines()[-1])) == EXAMPLE_INSTANCE
