"""`movseg`: one entry point; errors on stderr with the documented exit codes."""
import subprocess

from movseg_ros.cli import EXIT_BAD_INPUT, main

from conftest import PYTHON, REPO


def test_help_documents_the_exit_codes():
    r = subprocess.run([PYTHON, "-m", "movseg_ros.cli", "--help"], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert r.returncode == 0
    for line in ("0  done", "1  refused or failed", "2  bad arguments or input", "3  the node is absent"):
        assert line in r.stdout
    readme = (REPO / "README.md").read_text()
    assert "| 3 | the node is absent or did not answer in time" in readme


def test_bad_input_goes_to_stderr_with_exit_2(capsys, tmp_path):
    assert main(["play"]) == EXIT_BAD_INPUT  # neither --seconds nor --count
    out = capsys.readouterr()
    assert "movseg play: error: give --seconds or --count" in out.err and out.out == ""
    (tmp_path / "t.yaml").write_text("stepz: 3\n")
    assert main(["train", str(tmp_path / "t.yaml")]) == EXIT_BAD_INPUT
    assert "movseg train: error: unknown key 'stepz' in training config" in capsys.readouterr().err
    assert main([]) == EXIT_BAD_INPUT


def test_no_module_has_its_own_main():
    """One CLI entry point: the subcommand modules only register (the node and torchrun's
    `python -m movseg_core.training` keep theirs: they are other programs)."""
    from movseg_ros.cli import SUBCOMMAND_MODULES

    for name in SUBCOMMAND_MODULES:
        src = (REPO / (name.replace(".", "/") + ".py")).read_text()
        assert "\ndef main(" not in src and "if __name__" not in src, name
