"""A FlinkRunner whose uber-jar submission honours ``--savepoint_path``.

With ``--flink_submit_uber_jar`` Beam uploads the job as a jar and starts it through Flink's
REST API (``POST /jars/<id>/run``), whose body alone decides which savepoint the job
restores; Beam sends no savepoint there, so ``--savepoint_path`` was silently ignored and a
restarted job began again from its first offsets. This runner adds ``savepointPath`` to that
request.

Beam deletes the uploaded jar (about 160 MB) only when the submitting process sees the job end
or cancels it; a detached submission exits first, so every run left its jar in Flink's upload
directory. Once ``/run`` has answered, the JobManager holds the job's jars in its blob server
(failover and restarts read them there), so this runner deletes the upload right away.
Everything else is Beam's own FlinkRunner.
"""

from __future__ import annotations

import logging

from apache_beam.runners.portability.flink_runner import FlinkRunner
from apache_beam.runners.portability.flink_uber_jar_job_server import (
    FlinkBeamJob,
    FlinkUberJarJobServer,
)

logger = logging.getLogger(__name__)

__all__ = ["SavepointAwareFlinkRunner", "savepoint_path"]


def savepoint_path(options) -> str | None:
    """The ``--savepoint_path`` passed through to the Java runner, if any."""
    return options.get_all_options(retain_unknown_options=True).get("savepoint_path")


class _SavepointFlinkBeamJob(FlinkBeamJob):
    """Adds the savepoint to the REST call that starts the uploaded jar; deletes the jar once
    the job is submitted."""

    restore_from: str | None = None

    def post(self, path, **kwargs):
        if self.restore_from and path.endswith("/run"):
            kwargs["json"] = {**kwargs.get("json", {}), "savepointPath": self.restore_from}
            logger.info("starting the job from savepoint %s", self.restore_from)
        return super().post(path, **kwargs)

    def run(self):
        super().run()
        self.delete_jar()  # the job's jars now live in the JobManager's blob server


class _SavepointUberJarJobServer(FlinkUberJarJobServer):
    restore_from: str | None = None

    def create_beam_job(self, job_id, job_name, pipeline, options):
        job = _SavepointFlinkBeamJob(
            self._master_url, self.executable_jar(), job_id, job_name, pipeline, options,
            artifact_port=self._artifact_port,
        )
        job.restore_from = self.restore_from
        return job


class SavepointAwareFlinkRunner(FlinkRunner):
    """Beam's FlinkRunner; with an uber-jar submission the savepoint is restored too."""

    def default_job_server(self, options):
        server = super().default_job_server(options)
        if type(server) is FlinkUberJarJobServer:
            server.__class__ = _SavepointUberJarJobServer
            server.restore_from = savepoint_path(options)
        return server
