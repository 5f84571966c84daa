"""Datasets in PASCAL VOC layout: reader, synthetic generator, checker, download."""
