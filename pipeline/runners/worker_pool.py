"""The Beam worker pool that runs riskpipe's SDK harnesses beside a Flink TaskManager.

``python -m pipeline.runners.worker_pool --service_port=50000`` serves Flink's EXTERNAL
environment (``--environment_type=EXTERNAL --environment_config=127.0.0.1:50000``) like
Beam's ``apache_beam.runners.worker.worker_pool_main``, with two differences:

- Beam's pool starts each worker with its stdout on a pipe that nobody reads: once a worker
  has written 64 KiB there it blocks for good, and the job stalls with no error (Beam
  issue 21589). Here workers write to the pool's own stdout (its log file).
- Beam's pool gives workers no state cache; here it is ``--state_cache_mb`` (default 100),
  as ``--max_cache_memory_usage_mb`` does for other runners.

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
from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

logger = logging.getLogger(__name__)

DEFAULT_STATE_CACHE_MB = 100


class _WorkerPoolServicer(BeamFnExternalWorkerPoolServicer):
    """Starts each SDK worker as a process of this interpreter, stdout not captured."""

    def StartWorker(self, start_worker_request, unused_context):
        harness = (
            "from apache_beam.runners.worker.sdk_worker import SdkHarness; "
            f"SdkHarness({start_worker_request.control_endpoint.url!r}, "
            f"worker_id={start_worker_request.worker_id!r}, "
            f"state_cache_size={self._state_cache_size}, "
            f"data_buffer_time_limit_ms={self._data_buffer_time_limit_ms}).run()"
        )
        try:
            worker = subprocess.Popen([sys.executable, "-c", harness], close_fds=True)
        except OSError as error:
            return beam_fn_api_pb2.StartWorkerResponse(error=f"cannot start a worker: {error}")
        logger.info("started SDK worker %s (pid %d)", start_worker_request.worker_id, worker.pid)
        self._worker_processes[start_worker_request.worker_id] = worker
        return beam_fn_api_pb2.StartWorkerResponse()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.runners.worker_pool",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--service_port", type=int, default=50000,
                        help="Port of the pool's gRPC service (it listens on all interfaces).")
    parser.add_argument("--state_cache_mb", type=int, default=DEFAULT_STATE_CACHE_MB,
                        help="State cache of each SDK worker, in MiB (0 turns it off).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    address, server = _WorkerPoolServicer.start(
        use_process=True, port=args.service_port,
        state_cache_size=args.state_cache_mb << 20,
    )
    logger.info("worker pool listening at %s", address)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=5)  # Beam's atexit hook then ends the workers


if __name__ == "__main__":
    main()
