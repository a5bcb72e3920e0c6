import json
import subprocess
import sys

import pytest

from rawsynth import __version__
from rawsynth.cli import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"rawsynth {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "rawsynth", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"rawsynth {__version__}"


def test_profiles_command(capsys, tmp_path):
    assert main(["profiles"]) == 0
    assert "default" in capsys.readouterr().out.split()
    assert main(["profiles", "default"]) == 0
    assert json.loads(capsys.readouterr().out)["shot_per_iso"] == 1e-6
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["profiles", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "invalid JSON" in err and "Traceback" not in err


def test_config_command_prints_a_loadable_default(capsys, tmp_path):
    import yaml

    from rawsynth.cli import RUN_KEYS
    from rawsynth.pipeline import SynthConfig

    assert main(["config"]) == 0
    d = yaml.safe_load(capsys.readouterr().out)
    run = {k: d.pop(k) for k in RUN_KEYS}
    assert SynthConfig.from_dict(d) == SynthConfig() and run["seed"] == 0
