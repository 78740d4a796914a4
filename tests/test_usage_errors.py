"""Every command's usage errors read like every other error: click's usage line, one error line,
exit 2, no traceback. The cases are walked from the app itself, so a new command or option is
covered without editing this file."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main

from psilm.shell.cli import app, main

GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)
PLACEHOLDER = {"config": "c.yaml", "out": "o", "run": "r"}  # never opened: parsing fails first


def _required(cmd) -> list[str]:
    """argv that satisfies the command's required parameters (so another error is the one hit)."""
    argv: list[str] = []
    for p in cmd.params:
        if not p.required:
            continue
        value = PLACEHOLDER.get(p.name, "x")
        argv += [value] if p.param_type_name == "argument" else [max(p.opts, key=len), value]
    return argv


def _options(cmd):
    return [p for p in cmd.params if p.param_type_name == "option" and p.name != "help"]


def _numeric(opt) -> bool:
    desc = getattr(opt, "type_descriptor", None)  # typer's own parameters (newer typer)
    if desc is not None:
        return desc.annotation in (int, float)
    return getattr(opt.type, "name", "") in ("integer", "float")  # click's


def _cases() -> list[tuple[str, list[str]]]:
    cases: list[tuple[str, list[str]]] = [
        ("root: unknown command", ["predcit"]),
        ("root: unknown option", ["--bogus"]),
    ]
    for name in COMMANDS:
        cmd = GROUP.commands[name]
        ok = _required(cmd)
        if ok:
            cases.append((f"{name}: missing required", [name]))
        cases.append((f"{name}: unknown option", [name, *ok, "--bogus"]))
        cases.append((f"{name}: extra argument", [name, *ok, "surplus-argument"]))
        for opt in _options(cmd):
            flag = max(opt.opts, key=len)
            if opt.is_flag:
                cases.append((f"{name}: {flag} given a value", [name, *ok, f"{flag}=yes"]))
            else:
                cases.append((f"{name}: {flag} without its value", [name, *ok, flag]))
            if _numeric(opt):
                cases.append((f"{name}: {flag} not a number", [name, *ok, flag, "not-a-number"]))
    return cases


CASES = _cases()


def assert_usage_error(rc: int, out: str, err: str, command: str | None) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    usage = [x for x in lines if x.startswith("Usage: ")]
    errors = [x for x in lines if x.startswith("Error: ")]
    assert rc == 2, (rc, err)
    assert "Traceback" not in err + out, err
    assert len(usage) == 1 and len(errors) == 1, err
    assert usage[0].startswith(f"Usage: psilm {command}" if command else "Usage: psilm "), usage[0]
    assert lines[-1] == errors[0]  # the message is the last thing printed
    assert not out.strip()  # stdout stays for results


def test_every_command_is_walked():
    assert {"run", "demo", "bench", "principles", "generate", "filter", "train", "evaluate"} <= set(COMMANDS)
    assert len(CASES) > 3 * len(COMMANDS)


@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_usage_error(capsys, argv):
    rc = main(argv)
    cap = capsys.readouterr()
    assert_usage_error(rc, cap.out, cap.err, argv[0] if argv[0] in COMMANDS else None)


def test_bare_psilm_prints_the_help(capsys):
    rc = main([])
    cap = capsys.readouterr()
    shown = cap.out + cap.err  # typer draws its help on stdout
    assert rc == 2  # what click does for no_args_is_help
    assert "Traceback" not in shown and "Usage: psilm" in shown
    for name in COMMANDS:
        assert name in shown


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in COMMANDS])
def test_help_exits_0(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Usage: psilm" in out and "Traceback" not in out


def test_verbose_is_offered_where_work_is_done():
    for name in ("run", "demo", "bench", "principles", "generate", "filter", "train", "evaluate"):
        flags = {o for p in _options(GROUP.commands[name]) for o in p.opts}
        assert {"--verbose", "-v", "--quiet", "-q"} <= flags, name


@pytest.mark.parametrize(
    "argv, command",
    [(["predcit"], None), (["run"], "run"), (["run", "c.yaml", "--bogus"], "run"), ([], None)],
)
def test_console_script_usage_errors(argv, command):
    """The installed entry point (`python -m psilm.shell.cli`), in a fresh process."""
    res = subprocess.run([sys.executable, "-m", "psilm.shell.cli", *argv], capture_output=True, text=True)
    if argv:
        assert_usage_error(res.returncode, res.stdout, res.stderr, command)
    else:
        shown = res.stdout + res.stderr
        assert res.returncode == 2 and "Traceback" not in shown and "Usage: psilm" in shown
