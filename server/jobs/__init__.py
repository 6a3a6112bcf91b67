"""The job engine: long work as ``Job`` rows, their lifecycle, progress over Channels, dispatch by task name.

It knows nothing of LViT or of the studio's domain: a job has a ``kind`` (a label its creator chooses), the
name of the Celery task that runs it, params, progress and a result. Layout: ``models.py`` (the row),
``services.py`` (every state transition), ``progress.py`` (progress writes and broadcasts), ``runner.py`` (claim, run
under a heartbeat, finish: what every task does), ``selectors.py`` (reads), ``consumers.py`` (``/ws/jobs/<id>/``),
``tasks.py`` (the stale-job reaper).
"""
