"""Functions and classes defined in a script's ``__main__`` run on workers.

pytest's own ``__main__`` is not the test module, so these tests run a small master
script in a child process, where the functions really live in ``__main__``.
"""

from __future__ import annotations

import textwrap

from tests.support import run_script

MAIN_MODULE_SCRIPT = textwrap.dedent(
    """
    import json
    import os

    from pyaddprocs import addprocs, remotecall_fetch, rmprocs, spawnat


    def triple(value):
        return 3 * value


    class Point:
        def __init__(self, x, y):
            self.x = x
            self.y = y

        def norm_squared(self):
            return self.x * self.x + self.y * self.y


    def make_adder(offset):
        def add_offset(value):
            return value + offset
        return add_offset


    def main():
        (worker,) = addprocs(1)
        try:
            square = lambda value: value * value
            add_ten = make_adder(10)
            scale = 4
            scale_with_kwarg = lambda value, *, extra=0: value * scale + extra
            results = {
                "worker": worker,
                "lambda": remotecall_fetch(square, worker, 7),
                "closure": remotecall_fetch(add_ten, worker, 5),
                "lambda_with_kwarg": spawnat(worker, scale_with_kwarg, 3, extra=1).fetch(),
                "main_function": remotecall_fetch(triple, worker, 14),
                "main_class": remotecall_fetch(Point.norm_squared, worker, Point(3, 4)),
                "main_class_returned": remotecall_fetch(lambda: Point(1, 2), worker).y,
                "ran_elsewhere": remotecall_fetch(os.getpid, worker) != os.getpid(),
            }
            print(json.dumps(results), flush=True)
        finally:
            rmprocs(worker, waitfor=15)


    if __name__ == "__main__":
        main()
    """
)


def test_main_lambda_and_closure_run_remotely(scratch_dir):
    script = scratch_dir / "main_functions.py"
    script.write_text(MAIN_MODULE_SCRIPT)

    run = run_script(script, timeout=90, cwd=scratch_dir)

    results = run.last_json_line()
    assert results["ran_elsewhere"] is True
    assert results["lambda"] == 49
    assert results["closure"] == 15
    assert results["lambda_with_kwarg"] == 13
    assert results["main_function"] == 42
    assert results["main_class"] == 25
    assert results["main_class_returned"] == 2
