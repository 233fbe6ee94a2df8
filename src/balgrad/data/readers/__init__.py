"""The dataset readers: one module per dataset family, and the modules that register them.

Adding a dataset happens here, and only here: a module that reads the files of one
family into :class:`~balgrad.data.base.MultimodalDataset` splits of
:class:`~balgrad.data.base.Example` items (declaring its modalities, name -> kind), and
its registration (``register_dataset`` in ``builtin.py``, ``registry_disk.py`` or
``registry_av.py``; a third-party package registers through the ``balgrad.datasets``
entry-point group instead). An on-disk reader subclasses
:class:`~balgrad.data.disk.loader.DiskLoader` and decodes each file with the checked
decoders of :mod:`balgrad.data.decoders`.

A reader must not touch the machinery of :mod:`balgrad.data` that every dataset passes
through (the dataset contract and its checks, modality kinds, impairments, conditioned
views, the input pipeline, the feature store and caches, batches, splits, the decoders,
the disk loader and ``safe_pickle``): it uses them, and a change there is a change for
every dataset.
"""
