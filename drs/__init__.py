"""drs-wsss: Discriminative Region Suppression for weakly-supervised semantic segmentation."""

__version__ = "0.1.0"
