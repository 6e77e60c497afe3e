"""Many ``mulclip-pl`` calls of one and two processes, on two processes that import the package once.

Started afresh, every call of two processes imports torch, Lightning and open_clip twice, one after the
other (Lightning starts rank 1 once rank 0 is in ``fit``): about 15 s of a 17 s fit of 4 tiny steps on 2
busy cores. ``run_plan`` starts ``python -m tests.helpers.cli_plan`` as ranks 0 and 1 of a torchrun-style
launch and forks each call from them: a call of 2 processes on both ranks (Lightning finds
``TORCHELASTIC_RUN_ID`` and joins the two, as under ``torchrun``, instead of launching its own), a call of 1
on rank 0 alone, without that environment. The ranks wait for each other after every call (a file each), so
a call reads what the ones before it wrote. Forking is safe here: the drivers have only imported (the
hazard of ``tests/helpers/gloo.py``, a fork after torch's thread pool ran, does not arise).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ELASTIC = ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
           "MASTER_ADDR", "MASTER_PORT")


def run_plan(calls: list[tuple[str, int, list[str]]], folder: Path, timeout: int = 900) -> dict[str, dict]:
    """Runs ``(name, processes, argv)`` in order; per name: ``code`` (each rank's exit status, rank 0 first)
    and ``stderr`` (rank 0's). ``folder``: an empty folder for the plan, the outputs and the rendezvous."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.json").write_text(json.dumps(calls))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    logs = [open(folder / f"driver{rank}.log", "w") for rank in (0, 1)]
    drivers = [subprocess.Popen([sys.executable, "-m", "tests.helpers.cli_plan", str(folder), str(rank)], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
               for rank, log in enumerate(logs)]
    deadline = time.monotonic() + timeout
    while any(driver.poll() is None for driver in drivers):
        if time.monotonic() > deadline or any(driver.poll() not in (None, 0) for driver in drivers):
            for driver in drivers:  # with the calls they forked (one session each), which may wait on each other
                os.killpg(driver.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    for driver, log in zip(drivers, logs):
        driver.wait(), log.close()
    report = "\n".join((folder / f"driver{rank}.log").read_text()[-3000:] for rank in (0, 1))
    assert all(driver.returncode == 0 for driver in drivers), f"the plan did not finish:\n{report}"
    results = [json.loads((folder / f"results{rank}.json").read_text()) for rank in (0, 1)]
    return {name: {"code": [r[name] for r in results if name in r],
                   "stderr": (folder / f"{name}.rank0.err").read_text()} for name, _, _ in calls}


def _drive(folder: Path, rank: int) -> None:
    from mulclip_pl.cli import main  # imported once, before any fork

    results = {}
    for index, (name, processes, argv) in enumerate(json.loads((folder / "plan.json").read_text())):
        if rank < processes:
            port = _port(folder / f"{index}.port", rank) if processes > 1 else None
            results[name] = _forked(main, argv, folder / name, rank, port)
        (folder / f"{index}.done{rank}").touch()
        _wait_for(folder / f"{index}.done{1 - rank}")
    (folder / f"results{rank}.json").write_text(json.dumps(results))


def _forked(main, argv: list[str], prefix: Path, rank: int, port: int | None) -> int:
    """``mulclip-pl ARGV`` in a child process, as the console script runs it; its exit status."""
    pid = os.fork()
    if pid:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    for key in ELASTIC:
        os.environ.pop(key, None)
    if port is not None:
        os.environ.update(TORCHELASTIC_RUN_ID="plan", WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", RANK=str(rank),
                          LOCAL_RANK=str(rank), GROUP_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    for stream, suffix in ((1, "out"), (2, "err")):
        os.dup2(os.open(f"{prefix}.rank{rank}.{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), stream)
    sys.argv, code = ["mulclip-pl", *argv], 0
    try:
        main()
    except SystemExit as exc:  # what the interpreter does with it
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(code)


def _port(file: Path, rank: int) -> int:
    """A free port for the call's rendezvous: rank 0 picks it, rank 1 reads it."""
    if rank == 0:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        file.with_suffix(".tmp").write_text(str(port))
        file.with_suffix(".tmp").rename(file)
        return port
    _wait_for(file)
    return int(file.read_text())


def _wait_for(file: Path) -> None:
    while not file.exists():
        time.sleep(0.05)


if __name__ == "__main__":
    _drive(Path(sys.argv[1]), int(sys.argv[2]))
