"""One child process of the suite: ``python -m benchmarks.child TASK_JSON``.

The orchestrator (``python -m benchmarks``) starts one child per peer and measurement
group; this module is not meant to be run by hand. TASK_JSON holds:

    group        "steady" (latency, throughput, transfer on one cluster), "startup",
                 "ssh" or "memory"
    measurements the measurements of the steady group to run
    peer         adapter path ("module:Class" under benchmarks.peers); absent for "ssh"
    settings     Settings.to_json()
    result_path  file the child writes its JSON result to, after every measurement,
                 so that a child killed on timeout still leaves what it finished

The result maps each measurement to its figures, or to {"error": text} when it failed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback

from benchmarks.peers import load_adapter
from benchmarks.settings import WORKERS, settings_from_json

log = logging.getLogger("benchmarks.child")


def error_record(err: BaseException) -> dict:
    """Return the result entry of a failed measurement: the error and its traceback."""
    return {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}


class ResultFile:
    """The child's result, rewritten in full after every change."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict = {}

    def set(self, name: str, value: dict) -> None:
        self.data[name] = value
        temporary = self.path + ".tmp"
        with open(temporary, "w") as stream:
            json.dump(self.data, stream, indent=1, default=str)
        os.replace(temporary, self.path)


def run_steady(peer_class, settings, measurements: list[str], result: ResultFile) -> None:
    """Start the peer once and run the steady measurements on it; stop it in any case."""
    from benchmarks.latency import measure_latency
    from benchmarks.throughput import measure_throughput
    from benchmarks.transfer import measure_transfer

    functions = {"latency": measure_latency, "throughput": measure_throughput, "transfer": measure_transfer}
    peer = peer_class(settings)
    try:
        try:
            peer.start(WORKERS)
        except Exception as err:
            for name in measurements:
                result.set(name, {**error_record(err), "stage": "start"})
            return
        for name in measurements:
            log.info("%s: %s", peer_class.label, name)
            try:
                result.set(name, functions[name](peer, settings))
            except Exception as err:
                result.set(name, error_record(err))
    finally:
        try:
            peer.stop()
        except Exception as err:
            result.set("stop", error_record(err))


def run_task(task: dict) -> None:
    """Run the task's measurements and write their results; see the module docstring."""
    from benchmarks.ssh import measure_ssh_startup
    from benchmarks.startup import measure_memory, measure_startup

    settings = settings_from_json(task["settings"])
    result = ResultFile(task["result_path"])
    group = task["group"]
    try:
        if group == "ssh":
            result.set("ssh", measure_ssh_startup(settings))
            return
        peer_class = load_adapter(task["peer"])
        if group == "steady":
            run_steady(peer_class, settings, task["measurements"], result)
        elif group == "startup":
            result.set("startup", measure_startup(peer_class, settings, WORKERS))
        elif group == "memory":
            result.set("memory", measure_memory(peer_class, settings))
        else:
            raise ValueError(f"invalid measurement group {group!r}: expected steady, startup, ssh or memory")
    except Exception as err:
        for name in task["measurements"]:
            result.set(name, error_record(err))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.child TASK_JSON (run by python -m benchmarks)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The suite sends SIGTERM when it is interrupted; unwinding runs every peer's stop
    # and the SSH namespaces' teardown.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    run_task(json.loads(argv[0]))
    return 0


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    # multiprocessing's spawn and forkserver start methods re-import __main__ in each
    # worker, which is safe here because everything runs under this guard.
    sys.exit(main(sys.argv[1:]))
