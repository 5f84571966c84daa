"""Models: the DRS module and the DRS classifier (the paper's modified VGG-16)."""

from drs.models.drs import DRS, activation
from drs.models.vgg import DRSClassifier, drs_vgg16, imagenet_weights_path, load_backbone_weights

__all__ = ["DRS", "DRSClassifier", "activation", "drs_vgg16", "imagenet_weights_path", "load_backbone_weights"]
