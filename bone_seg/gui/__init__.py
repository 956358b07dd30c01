"""bone_seg's napari plugin (``pip install 'bone_seg[napari]'``): dock widgets that segment a
scan, jump between the slices worth labelling and save the painted ones, fine-tune, score and
measure, each by running the very command a terminal user runs (``bone-predict``, ``bone-import``,
``bone-fit experiment=finetune``, ``bone-iou``, ``bone-morpho``) as a child process
(:mod:`bone_seg.gui.runner`): a progress bar and a cancel button, the viewer never waits, and the
same results bit for bit as the command.

One widget per file (``segment``, ``label_slices``, ``finetune``, ``score``, ``measure``), their
shared frame in ``panel``, the layer helpers in ``layers``. This is the only part of bone_seg that
imports napari, Qt or magicgui (an import-linter contract in ``pyproject.toml``); nothing in the
core imports it.
"""
