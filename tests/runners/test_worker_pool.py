"""The worker pool as two TaskManagers use it: each numbers its SDK workers from 1-1, over its
own connection, and stopping one TaskManager's worker must leave the other's running."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc, endpoints_pb2

from pipeline.runners.worker_pool import _WorkerPoolServicer


@pytest.fixture
def pool():
    """A worker pool on a free port, as ``python -m pipeline.runners.worker_pool`` serves it."""
    servicer = _WorkerPoolServicer(
        use_process=True, state_cache_size=0, data_buffer_time_limit_ms=20
    )
    server = grpc.server(futures.ThreadPoolExecutor(4))
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
        for worker in servicer._worker_processes.values():
            worker.kill()
            worker.wait()


def task_manager(address: str):
    """One TaskManager's client: its own channel, as Beam's ExternalEnvironmentFactory opens."""
    # A connection of its own (gRPC in one process would otherwise share one), as two
    # TaskManager processes have.
    channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    return channel, beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(channel)


def start(stub, worker_id: str, control_port: int) -> None:
    # Nothing listens at the control endpoint: a worker waits up to 60 s for it, long
    # enough to see which workers a StopWorker ends.
    response = stub.StartWorker(beam_fn_api_pb2.StartWorkerRequest(
        worker_id=worker_id,
        control_endpoint=endpoints_pb2.ApiServiceDescriptor(url=f"127.0.0.1:{control_port}"),
    ))
    assert not response.error


def test_stopping_one_task_managers_worker_leaves_the_others_with_the_same_id(pool):
    servicer, address = pool
    channel_a, tm_a = task_manager(address)
    channel_b, tm_b = task_manager(address)
    try:
        start(tm_a, "1-1", 1)
        start(tm_b, "1-1", 2)
        workers = dict(servicer._worker_processes)
        assert len(workers) == 2, "both workers are known, though their ids are the same"

        tm_a.StopWorker(beam_fn_api_pb2.StopWorkerRequest(worker_id="1-1"))

        stopped = [w for w in workers.values() if w.poll() is not None]
        running = [w for w in workers.values() if w.poll() is None]
        assert len(stopped) == 1 and len(running) == 1
        assert list(servicer._worker_processes.values()) == running
        # The other TaskManager's StopWorker still finds its own worker.
        tm_b.StopWorker(beam_fn_api_pb2.StopWorkerRequest(worker_id="1-1"))
        assert running[0].poll() is not None
        assert servicer._worker_processes == {}
    finally:
        channel_a.close()
        channel_b.close()
