"""The study's stages: one module per DVC stage, each reading the artifacts before it and
writing its own (atomically, so a stage killed half-way leaves nothing under its final names).

* :mod:`nvr.stages.prepare` - ``prepare``: ``data/``.
* :mod:`nvr.stages.embed` - ``embed@<teacher>``: a teacher's candidates.
* :mod:`nvr.stages.mine` - ``mine``: every method's, every teacher's and every ensemble's mined negatives.
* :mod:`nvr.stages.ensembles` - the teacher ensembles (Table 2), mined by the ``mine`` stage.
* :mod:`nvr.stages.train` - ``train@<method>``, ``train_teacher@<t>``, ``train_stage2``.
* :mod:`nvr.stages.evaluate` - ``evaluate*``: MTEB scores of one model.
* :mod:`nvr.stages.context` - the data folder, read once per stage.

Paths come from :class:`nvr.paths.Layout`; the report (:mod:`nvr.report`) reads what these write.
Import the stage module you run (``from nvr.stages import mine``): this package imports none
of them, so each DVC stage depends on the code it runs and nothing else.
"""
