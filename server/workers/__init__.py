"""The human-in-the-loop cycle on Celery: proposals, EPI pseudo-labels, scoring, training, promotion.

Layout: ``services.py`` (job lifecycle and the domain writes the workers make), ``pipeline.py`` (the work
each task does, calling ``ml``), ``runtime.py`` (process-level model and text-embedder cache),
``progress.py`` (the one progress helper), ``tasks.py`` (thin Celery tasks that take ids),
``consumers.py`` (websockets), ``apis.py`` (REST).
"""
