"""Submitting an import job, as the imports API and the admin do: it runs here, or (with
a broker) its row phase is sent to a worker once the job's row has committed. The command
runs its job here (imports.runner.run_job); the periodic sync runs its rows here either
way (imports.sync). What happens to a job then is imports.lifecycle's.
"""

from .dispatch import RUN_IMPORT_JOB, assign, run_or_send
from .lifecycle import SourceBusy, fail_job
from .models import ImportJob
from .runner import run_job
from .sources import SourceError


def submit_job(job: ImportJob) -> None:
    """Run `job` now, or on Celery workers when a broker is configured (imports.dispatch)."""
    assign(job)
    try:
        run_or_send(RUN_IMPORT_JOB, run_job, job.pk)
    except SourceBusy as exc:
        fail_job(job, str(exc))
    except SourceError:
        pass  # recorded on the job by run_job
