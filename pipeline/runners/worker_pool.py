"""The Beam worker pool that runs riskpipe's SDK harnesses beside a Flink TaskManager.

``python -m pipeline.runners.worker_pool --service_port=50000`` serves Flink's EXTERNAL
environment (``--environment_type=EXTERNAL --environment_config=127.0.0.1:50000``) like
Beam's ``apache_beam.runners.worker.worker_pool_main``, with these differences:

- Beam's pool starts each worker with its stdout on a pipe that nobody reads: once a worker
  has written 64 KiB there it blocks for good, and the job stalls with no error (Beam
  issue 21589). Here workers write to the pool's own stdout (its log file).
- Beam's pool knows its workers by worker id alone, but every TaskManager numbers its workers
  from 1-1: with two TaskManagers on one pool, one TaskManager's StopWorker killed the other's
  worker of the same id (a task failed with "client cancelled", or waited for a worker that
  never came). Here a worker is known by the connection that started it and its id, and only
  that connection can stop it.
- Beam's pool gives workers no state cache; here it is ``--state_cache_mb`` (default 100),
  as ``--max_cache_memory_usage_mb`` does for other runners.
- Workers weigh state-cache values without walking every module's globals, commit a
  bundle's state writes pipelined with every answer checked (``--no_pipelined_commits``
  turns that off), and send their output at least every ``--data_buffer_ms`` while a
  bundle runs, cut between elements (:mod:`pipeline.runners.sdk_worker` says why).

Workers run this interpreter (not whatever ``python`` is first on PATH).
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading

from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners.worker.sdk_worker import SdkHarness
from apache_beam.runners.worker.worker_pool_main import (
    BeamFnExternalWorkerPoolServicer,
    kill_process_gracefully,
)

from pipeline.runners import sdk_worker

logger = logging.getLogger(__name__)

DEFAULT_STATE_CACHE_MB = 100
DEFAULT_DATA_BUFFER_MS = 20
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _WorkerPoolServicer(BeamFnExternalWorkerPoolServicer):
    """Starts each SDK worker as a process of this interpreter, stdout not captured."""

    pipelined_commits = True

    def StartWorker(self, start_worker_request, context):
        harness = (
            "from pipeline.runners.worker_pool import run_worker; "
            f"run_worker({start_worker_request.control_endpoint.url!r}, "
            f"{start_worker_request.worker_id!r}, {self._state_cache_size}, "
            f"{self._data_buffer_time_limit_ms}, {self.pipelined_commits})"
        )
        try:
            worker = subprocess.Popen([sys.executable, "-c", harness], close_fds=True)
        except OSError as error:
            return beam_fn_api_pb2.StartWorkerResponse(error=f"cannot start a worker: {error}")
        logger.info("started SDK worker %s for %s (pid %d)", start_worker_request.worker_id,
                    _peer(context), worker.pid)
        self._worker_processes[(_peer(context), start_worker_request.worker_id)] = worker
        return beam_fn_api_pb2.StartWorkerResponse()

    def StopWorker(self, stop_worker_request, context):
        key = (_peer(context), stop_worker_request.worker_id)
        worker = self._worker_processes.pop(key, None)
        if worker is None:
            # Another connection's worker may have this id: leave it. A worker whose runner
            # has gone ends by itself when its control stream closes.
            logger.warning("StopWorker: no worker %s started by %s", *reversed(key))
        else:
            logger.info("stopping SDK worker %s for %s (pid %d)", key[1], key[0], worker.pid)
            kill_process_gracefully(worker)
        return beam_fn_api_pb2.StopWorkerResponse()


def _peer(context) -> str:
    """The client connection a request came on (``ipv4:127.0.0.1:40512``)."""
    return context.peer() if context is not None else ""


def run_worker(
    control_url: str, worker_id: str, state_cache_bytes: int, data_buffer_ms: int,
    pipelined_commits: bool,
) -> None:
    """One SDK worker process: Beam's SdkHarness, with pipelined state commits if asked."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # Not Beam's data_buffer_time_limit_ms: its timer thread can cut an element in two.
    sdk_worker.install(pipelined_commits=pipelined_commits, output_interval_ms=data_buffer_ms)
    SdkHarness(control_url, worker_id=worker_id, state_cache_size=state_cache_bytes).run()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.runners.worker_pool",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--service_port", type=int, default=50000,
                        help="Port of the pool's gRPC service (it listens on all interfaces).")
    parser.add_argument("--state_cache_mb", type=int, default=DEFAULT_STATE_CACHE_MB,
                        help="State cache of each SDK worker, in MiB (0 turns it off).")
    parser.add_argument("--data_buffer_ms", type=int, default=DEFAULT_DATA_BUFFER_MS,
                        help="How often a worker sends the output it has to the runner while a "
                        "bundle runs, in ms (0: only at the end of the bundle or every 10 MB).")
    parser.add_argument("--no_pipelined_commits", action="store_true",
                        help="Commit state one cell at a time, waiting for each (Beam's own way).")
    args = parser.parse_args(argv)
    _WorkerPoolServicer.pipelined_commits = not args.no_pipelined_commits
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    address, server = _WorkerPoolServicer.start(
        use_process=True, port=args.service_port,
        state_cache_size=args.state_cache_mb << 20,
        data_buffer_time_limit_ms=args.data_buffer_ms,  # handed to run_worker
    )
    logger.info("worker pool listening at %s", address)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=5)  # Beam's atexit hook then ends the workers


if __name__ == "__main__":
    main()
