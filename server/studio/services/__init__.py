"""Writes, one module per entity: ``projects``, ``cases``, ``masks``, ``lvit`` (dataset import), ``exports``,
``registry`` (model versions), ``training``, ``proposals``, ``jobs``; ``common`` holds audit and file helpers."""
