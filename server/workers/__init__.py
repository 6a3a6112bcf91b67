"""Adapters between the studio's rows and files and ``ml``: the GPU half of the human-in-the-loop cycle.

Layout: ``tasks.py`` (Celery tasks: each runs one pipeline function through the job engine's runner),
``pipeline.py`` (what each task does: read rows and files, run ``ml``, write results through the studio's
services), ``runtime.py`` (the process-level model and text-embedder cache). Nothing here decides anything
about the domain: promotion, proposals and versions are the studio's.

``ml`` (and with it torch) is imported inside the functions that run on a worker: the web process imports this
package too (it registers the tasks) and must start without loading torch.
"""
