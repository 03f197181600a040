"""One local "compute job": the supervisor process that runs a job's script and reports its status.

``python -m devhost.mlservice.jobrunner <state_dir> <job_name>`` is started by
``LocalPlatform.submit_job`` in its own session, so it outlives whoever submitted the job (the
devhost process, a test): that is what makes re-attachment after a host restart trivial — a new
``LocalPlatform`` just reads ``state.json``. It walks Azure ML's life-cycle:

    NotStarted (written by submit) → Queued (waiting for free nodes) → Starting → Running
        → Completed | Failed (preempted when the script exits 75) | Canceled

The cluster's max nodes is the concurrency cap: a job needs ``instance_count`` node slots (flocks
under ``computes/<name>/``) and stays Queued until it holds them. The kernel releases the slots
and the runner's own lock when the runner dies, however it dies; the script runs with a parent-death
signal, so a killed runner never leaves an orphan training process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devhost.lifetime import die_with_parent
from shared.platform import PREEMPTED_EXIT_CODE
from shared.platform.localstore import (
    FileLock,
    LocalLayout,
    iso,
    job_spec_from_dict,
    read_json,
    resolve_input_path,
    utcnow,
    write_json,
)

POLL_SECONDS = 0.1
#: After SIGTERM a script has this long to checkpoint and exit before it is killed (Azure gives ~30 s).
GRACE_SECONDS = 30.0


class JobRunner:
    def __init__(self, state_dir: Path, name: str) -> None:
        self.layout = LocalLayout(state_dir)
        self.name = name
        document = read_json(self.layout.job_spec_file(name))
        if document is None:
            raise SystemExit(f"no job.json for {name!r} under {self.layout.jobs_dir}")
        self.spec = job_spec_from_dict(document["spec"])
        self.code_dir = Path(document["code_dir"])
        self.python = str(document.get("python") or sys.executable)
        self.state: dict[str, Any] = read_json(self.layout.job_state_file(name)) or {}
        self.children: list[subprocess.Popen[bytes]] = []
        self.slots: list[FileLock] = []
        self.stop_requested = False

    # ----------------------------------------------------------------- state

    def _write(self, **changes: Any) -> None:
        status = changes.get("status")
        if status is not None and status != self.state.get("status"):
            # Every transition, in order: a status can be too brief to be seen by polling (Starting).
            self.state["history"] = [*self.state.get("history", []), {"status": status, "at": iso(utcnow())}]
        self.state.update(changes)
        write_json(self.layout.job_state_file(self.name), self.state)

    def _cancel_requested(self) -> bool:
        return self.stop_requested or self.layout.cancel_file(self.name).exists()

    def _finish(self, status: str, error: str | None = None, exit_code: int | None = None, **extra: Any) -> None:
        self._write(status=status, error=error, exit_code=exit_code, ended_at=iso(utcnow()), **extra)

    # ----------------------------------------------------------------- slots

    def _cap(self) -> int:
        compute = read_json(self.layout.compute_file(self.spec.compute)) or {}
        return int(compute.get("max_instances", 1))

    def _try_take_slots(self) -> bool:
        need = self.spec.instance_count
        taken: list[FileLock] = []
        for index in range(self._cap()):
            lock = FileLock(self.layout.slot_lock(self.spec.compute, index))
            if lock.acquire():
                taken.append(lock)
                if len(taken) == need:
                    self.slots = taken
                    return True
        for lock in taken:
            lock.release()
        return False

    # ----------------------------------------------------------------- the script

    def _argv(self) -> list[str]:
        outputs = self.layout.job_outputs_dir(self.name)
        outputs.mkdir(parents=True, exist_ok=True)
        replacements = {"{outputs}": str(outputs)}
        for key, job_input in self.spec.inputs.items():
            replacements[f"{{inputs.{key}}}"] = resolve_input_path(self.layout, job_input.path)
        args = []
        for arg in self.spec.args:
            for placeholder, value in replacements.items():
                arg = arg.replace(placeholder, value)
            args.append(arg)
        return [self.python, str(self.code_dir / self.spec.script), *args]

    def _start_children(self) -> None:
        world = self.spec.instance_count * self.spec.processes_per_instance
        if self.spec.distribution != "pytorch":
            world = 1
        logs = self.layout.job_logs_dir(self.name)
        logs.mkdir(parents=True, exist_ok=True)
        base_env = {
            **os.environ,
            **self.spec.environment_variables,
            "PYTHONUNBUFFERED": "1",
            "AZUREML_RUN_ID": self.name,
            "AZUREML_EXPERIMENT_NAME": self.spec.experiment_name,
        }
        if world > 1:
            # What torchrun / Azure ML's PyTorch distribution set for each process.
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            base_env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world)}
        argv = self._argv()
        for rank in range(world):
            env = dict(base_env)
            if world > 1:
                env |= {
                    "RANK": str(rank),
                    "LOCAL_RANK": str(rank % self.spec.processes_per_instance),
                    "NODE_RANK": str(rank // self.spec.processes_per_instance),
                }
            log_name = "std_log.txt" if world == 1 else f"std_log_process_{rank}.txt"
            with open(logs / log_name, "ab") as log:
                self.children.append(
                    subprocess.Popen(
                        argv,
                        cwd=self.code_dir,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        preexec_fn=die_with_parent(signal.SIGKILL),  # no orphaned training if the runner dies
                    )
                )

    def _signal_children(self, sig: int) -> None:
        for child in self.children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(sig)

    def _stop_children(self) -> None:
        self._signal_children(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline and any(c.poll() is None for c in self.children):
            time.sleep(POLL_SECONDS)
        self._signal_children(signal.SIGKILL)
        for child in self.children:
            child.wait()

    def _log_tail(self, lines: int = 20) -> str:
        log = self.layout.job_logs_dir(self.name) / (
            "std_log.txt" if len(self.children) <= 1 else "std_log_process_0.txt"
        )
        try:
            text = log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    # ----------------------------------------------------------------- the life-cycle

    def run(self) -> int:
        me = FileLock(self.layout.runner_lock(self.name))
        if not me.acquire(timeout=2.0):
            return 0  # another runner already owns this job
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if self.state.get("status") not in (None, "NotStarted"):
            return 0  # already ran (a runner started twice after it finished)
        self._write(status="Queued", runner_pid=os.getpid())
        while not self._try_take_slots():
            if self._cancel_requested():
                self._finish("Canceled", "canceled while queued")
                return 0
            time.sleep(POLL_SECONDS)
        if self._cancel_requested():
            self._finish("Canceled", "canceled before it started")
            return 0
        self._write(status="Starting", started_at=iso(utcnow()))
        try:
            self._start_children()
        except OSError as exc:
            self._finish("Failed", f"could not start {self.spec.script}: {exc}")
            return 0
        self._write(status="Running", child_pids=[c.pid for c in self.children])
        deadline = time.monotonic() + self.spec.timeout_seconds
        while any(c.poll() is None for c in self.children):
            if self._cancel_requested():
                self._write(status="CancelRequested")
                self._stop_children()
                self._finish("Canceled", "canceled by request")
                return 0
            if time.monotonic() > deadline:
                self._stop_children()
                self._finish("Canceled", f"exceeded limits.timeout ({self.spec.timeout_seconds}s); the job was stopped")
                return 0
            if any(c.returncode not in (None, 0) for c in self.children):
                break  # one rank failed: the others cannot finish (as in torchrun)
            time.sleep(POLL_SECONDS)
        if any(c.poll() is None for c in self.children):
            self._stop_children()
        codes = [c.returncode for c in self.children]
        failed = [code for code in codes if code != 0]
        if not failed:
            self._finish("Completed", exit_code=0)
        elif PREEMPTED_EXIT_CODE in failed:
            self._finish(
                "Failed",
                f"preempted: the script exited {PREEMPTED_EXIT_CODE} after SIGTERM with a checkpoint written; "
                "resubmit with --resume auto",
                exit_code=PREEMPTED_EXIT_CODE,
                preempted=True,
            )
        else:
            self._finish("Failed", f"the script exited {failed[0]}:\n{self._log_tail()}", exit_code=failed[0])
        return 0

    def _on_sigterm(self, signum: int, frame: object) -> None:
        # LocalPlatform.cancel_job writes the cancel file and signals us; the main loop does the rest.
        self.stop_requested = True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m devhost.mlservice.jobrunner <state_dir> <job_name>", file=sys.stderr)
        return 2
    return JobRunner(Path(args[0]), args[1]).run()


if __name__ == "__main__":
    raise SystemExit(main())
