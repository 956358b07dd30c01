"""Packaging a weights file for others: the bioimage.io model package (``bone-export
format=bioimageio``): its ``rdf.yaml`` (:mod:`.rdf`), model card (:mod:`.card`) and the zip with
ONNX and TorchScript weights, test tensors and cover (:mod:`.export`). Nothing is imported here."""
