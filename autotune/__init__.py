"""The autotuner: config spaces, search, isolated measurement, and the baked store per GPU.

* ``space``  — :class:`~.space.DictConfigSpace` (a kernel's ``{name: values}`` plus constraints)
  and :class:`~.space.CallbackConfigSpace` (an adapter for spaces owned by other tools);
* ``search`` — exhaustive / guided (seeds + surrogate + hill climbing) search, and the
  head-to-head final with noise-aware, deterministic tie-breaking;
* ``worker`` — spawn-context worker processes, restarted after fatal CUDA errors or hangs;
* ``tuner``  — one (op, backend, shape, dtype) job end to end; ``cli`` — ``tilearena tune``;
* ``store``  — ``lookup_config`` / ``best_backend`` for the dispatcher, and ``bake``.

Importing this package is cheap: each module is imported where it is used, so the dispatcher's
``from .autotune import store`` pays only for the store.
"""
