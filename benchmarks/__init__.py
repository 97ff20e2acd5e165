"""Benchmarks of pyaddprocs against its Python peers: ``python -m benchmarks``.

    python -m benchmarks  (orchestrator, __main__.py)
      ├─ for each measurement group and each installed peer, one child process:
      │     python -m benchmarks.child TASK_JSON
      │       ├─ peer.start(n)   the peer's own API starts n workers
      │       ├─ latency / throughput / transfer / startup / memory loops
      │       ├─ peer.stop()     in a finally block
      │       └─ writes its figures to a JSON file named in TASK_JSON
      ├─ after each child: processes it left behind are reported as leaks and ended
      └─ report.py writes results/latest.md and results/latest.json, prints the table

Every peer runs in a fresh child process, so one library's threads, imports and
leftover processes cannot slow the next one down. The orchestrator makes itself a
child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so workers that outlive their
child are re-parented to it and can be listed, reported and ended by pid.
"""
