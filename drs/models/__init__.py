"""Models: pure ``nn.Module`` builders and weight-name mappings; they import nothing from drs but drs.models and drs.errors."""
