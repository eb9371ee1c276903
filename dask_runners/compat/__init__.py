"""Code that makes dask_runners a drop-in for other projects; nothing in the core imports it.

* :mod:`dask_runners.compat.dask_mpi`: dask-mpi's ``initialize``,
  ``execute`` and ``send_close_signal`` (imported from
  :mod:`dask_runners.mpi`, as from ``dask_mpi``).

dask-jobqueue's ``SLURMRunner`` arguments need no code of their own here:
:class:`~dask_runners.SLURMRunner` takes them as they are.
"""
