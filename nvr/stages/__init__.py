"""The study's stages: one module per DVC stage, each reading the artifacts before it and
writing its own (atomically, so a stage killed half-way leaves nothing under its final names).

* :mod:`nvr.stages.prepare` - ``prepare``: ``data/``.
* :mod:`nvr.stages.embed` - ``embed@<teacher>``: a teacher's candidates.
* :mod:`nvr.stages.mine` - ``mine@<method>`` and ``mine_teacher@<teacher>``: mined negatives.
* :mod:`nvr.stages.ensembles` - ``ensembles``: teacher ensembles (Table 2).
* :mod:`nvr.stages.train` - ``train@<method>``, ``train_teacher@<t>``, ``train_stage2``.
* :mod:`nvr.stages.evaluate` - ``evaluate*``: MTEB scores of one model.
* :mod:`nvr.stages.context` - the data folder, read once per stage.

Paths come from :class:`nvr.paths.Layout`; the report (:mod:`nvr.report`) reads what these write.
Import the stage module you run (``from nvr.stages import mine``): this package imports none
of them, so each DVC stage depends on the code it runs and nothing else.
"""
