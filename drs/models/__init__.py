"""Models: pure ``nn.Module`` builders and weight-name mappings.

They import nothing from drs but drs.models and drs.errors (no settings, data, store or stage).
"""
