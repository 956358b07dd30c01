"""Morphometry as the commands run it, over configs: ``bone-morpho``'s measuring of one volume or
a reference and a prediction (:mod:`.morpho`: settings checked, volumes opened, passes, files) and
``bone-predict morpho=true mlflow=true`` (:mod:`.predict_morpho`). The streamed measures themselves
are :mod:`bone_seg.morphometry` (no configs there). Nothing is imported here."""
